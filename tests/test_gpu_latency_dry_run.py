"""benchmarks/gpu_latency.py's dry run: every code path on a tiny configuration, on CPU, writing only its JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_latency.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def test_dry_run_exits_cleanly_and_writes_its_json(tmp_path):
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    output = tmp_path / "gpu_latency.json"
    command = [sys.executable, "-W", "error", str(SCRIPT), "--device", "cpu", "--dry-run", "--output", str(output)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]

    report = json.loads(output.read_text(encoding="utf8"))
    assert report["dry_run"] is True and report["environment"]["device"] == "cpu"
    assert set(report["models"]) == {"qwen3-0.6b", "qwen3-8b"}
    for result in report["models"].values():
        assert "error" not in result
        assert set(result["shapes"]) == {"query 1x30", "query 8x30", "query 32x30", "8x256", "docs 32x512"}
        for measured in result["shapes"].values():
            methods = set(measured["median_ms"])
            assert {f"{kind} K={k}" for kind in ("plain", "fast", "authors") for k in (1, 3, 6)} <= methods
            assert "single pass" in methods and "single pass (ST)" in methods
            assert all(math.isfinite(value) and value > 0 for value in measured["median_ms"].values())
        assert result["exactness"]["float32"]["fast vs plain (all)"]["min_cosine"] >= 0.99999
        assert result["exactness"]["bfloat16"]["fast vs plain (all)"]["min_cosine"] >= 0.999
        assert result["exactness"]["bfloat16"]["ST single pass vs single pass"]["min_cosine"] >= 0.999
        assert len(result["targets"]) == 4
    assert "DRY RUN" in completed.stdout
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == before  # a dry run never writes RESULTS.md
