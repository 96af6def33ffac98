"""The installed ``laser`` console script, as a user runs it: every command's exit status and what it prints.

Each command runs in a subprocess through the entry point pip installed (``.venv/bin/laser``), so the
status checked is the one ``sys.exit(main())`` really exits with. User errors must exit 2 with one
``laser CMD: error: ...`` line and no traceback or object repr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from laser_integrations.cli import main

LASER = Path(sys.executable).with_name("laser")
REPR = re.compile(r"\b[A-Z][A-Za-z]+\((?:[a-z_]+=|')")
"""What a dataclass or object repr looks like in stderr: ``EvaluationReport(dataset=...``."""

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def laser(*argv: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(LASER), *argv], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
    )


def assert_clean_success(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not REPR.search(result.stderr), result.stderr[-3000:]


def assert_user_error(result: subprocess.CompletedProcess[str], command: str, message: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"laser {command}: error: "), lines
    assert message in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def training_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    topics = ["the sky", "photosynthesis", "default arguments", "slices"]
    rows = [
        {
            "query": f"tell me about {topic}",
            "rationale": f"The question is about {topic}.\n\nSo the answer is about {topic}.",
            "positive": f"A passage about {topic}.",
            "negative": f"A passage about {topics[(index + 1) % len(topics)]}.",
        }
        for index, topic in enumerate(topics)
    ]
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf8")
    return path


# -- every command succeeds with status 0 ---------------------------------------------------------------------


def test_encode_export_and_explain(tiny_dirs, tmp_path):
    model = str(tiny_dirs["qwen3"])
    result = laser("encode", "why is the sky blue", "how do plants eat", "--model", model, "--device", "cpu")
    assert_clean_success(result)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["text"] for row in rows] == ["why is the sky blue", "how do plants eat"]
    assert len(rows[0]["embedding"]) == 64

    assert_clean_success(
        laser("encode", "a passage", "-m", model, "--side", "document", "-o", str(tmp_path / "d.npy"))
    )
    assert (tmp_path / "d.npy").is_file()

    assert_clean_success(laser("export", str(tmp_path / "exported"), "--model", model, "-k", "2"))
    assert (tmp_path / "exported" / "laser_config.json").is_file()

    explained = laser("explain", "why is the sky blue", "--model", str(tmp_path / "exported"), "--top", "2")
    assert_clean_success(explained)
    assert explained.stdout.startswith("2 thinking step(s) for: 'why is the sky blue'")


def test_the_01_positional_model_form_still_works_with_a_note(tiny_dirs):
    result = laser("encode", str(tiny_dirs["qwen3"]), "why is the sky blue", "--device", "cpu")
    assert_clean_success(result)
    assert "the model as first argument is deprecated; use --model" in result.stderr
    assert [json.loads(line)["text"] for line in result.stdout.splitlines()] == ["why is the sky blue"]


def table_metrics(stdout: str) -> dict[str, dict[str, float]]:
    """``{mode: {column: value}}`` of the metric columns of the table ``laser eval``/``laser demo`` print."""
    lines = stdout.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("mode "))
    header = re.split(r"\s{2,}", lines[start].strip())
    rows = {}
    for line in lines[start + 2 :]:
        if not line.strip() or line.startswith("("):
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = {name: float(cell) for name, cell in zip(header, cells, strict=True) if "@" in name}
    return rows


def assert_table_matches_json(stdout: str, report: dict) -> None:
    from laser_integrations.evaluation.report import METRIC_LABELS

    table = table_metrics(stdout)
    assert set(table) == {mode["mode"] for mode in report["modes"]}
    for mode in report["modes"]:
        assert mode["metrics"], mode
        for name, value in mode["metrics"].items():
            assert 0.0 <= value <= 1.0
            assert table[mode["mode"]][METRIC_LABELS.get(name, name)] == pytest.approx(value, abs=5e-4), name


def test_demo_and_eval_with_two_queries(tiny_dirs, tmp_path):
    from laser_integrations import load_model
    from laser_integrations.evaluation import Mode, bundled_dataset_path, evaluate_dataset, load_beir

    model = str(tiny_dirs["qwen3"])
    common = ["--model", model, "--limit", "2", "--max-new-tokens", "2", "--max-seq-length", "48", "--no-progress"]
    demo = laser("demo", *common, "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "demo"))
    assert_clean_success(demo)
    assert "laser demo: dtype float32 (default on a CPU" in demo.stderr  # which precision, said once
    demo_report = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert demo_report["num_queries"] == 2 and "qdrant local mode" in demo_report["search"]
    assert f"indexed 275 passages into qdrant:local:{tmp_path / 'cache' / 'qdrant'}" in demo.stdout
    assert_table_matches_json(demo.stdout, demo_report)  # the second run's reuse: tests/test_evaluation.py

    evaluation = laser("eval", *common, "--output-dir", str(tmp_path / "eval"), "--document-batch-size", "64")
    assert_clean_success(evaluation)
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert [mode["mode"] for mode in report["modes"]] == ["single", "latent", "explicit"]
    assert_table_matches_json(evaluation.stdout, report)

    # the same numbers from the library, in this process: the command computed what it printed
    data = load_beir(bundled_dataset_path("pyref")).limited(2)
    recomputed = evaluate_dataset(
        load_model(model, max_seq_length=48, device="cpu"),
        data,
        [Mode("single", "latent", 1), Mode("latent", "latent", 3)],
        document_batch_size=64,
        show_progress_bar=False,
    )
    for result, printed in zip(recomputed.modes, report["modes"][:2], strict=True):
        assert result.metrics == pytest.approx(printed["metrics"], abs=1e-6), result.mode


def test_rationales_and_train_on_the_tiny_model(tiny_dirs, training_rows, tmp_path):
    model = str(tiny_dirs["qwen3"])
    output = tmp_path / "with_rationales.jsonl"
    result = laser("rationales", str(training_rows), "-o", str(output), "--model", model, "--max-new-tokens", "3")
    assert_clean_success(result)
    assert "wrote 4 row(s)" in result.stderr and "laser rationales: dtype float32" in result.stderr
    assert len(output.read_text().splitlines()) == 4

    trained = tmp_path / "trained"
    argv = ["train", str(training_rows), "--model", model, "-o", str(trained), "--max-steps", "1"]
    argv += ["--per-device-train-batch-size", "2", "--lora-r", "4", "--max-seq-length", "48", "--device", "cpu"]
    training = laser(*argv)
    assert_clean_success(training)
    assert "laser train: float32 (--bf16 for bf16 mixed precision)" in training.stderr
    assert (trained / "laser_config.json").is_file()


def test_eval_mteb_on_a_local_dataset(tiny_dirs, tmp_path):
    pytest.importorskip("mteb")
    argv = ["eval-mteb", "--model", str(tiny_dirs["qwen3"]), "--dataset", "pyref", "--max-seq-length", "48"]
    result = laser(*argv, "--output-dir", str(tmp_path / "mteb"), "--batch-size", "64", "--no-progress")
    assert_clean_success(result)
    assert re.search(r"^LaSERLocalRetrieval\s+\d+\.\d$", result.stdout, re.MULTILINE), result.stdout


# -- user errors: status 2, one line ------------------------------------------------------------------------


def test_user_errors_exit_2_with_one_line_from_the_console_script(tiny_dirs, tmp_path):
    model = str(tiny_dirs["qwen3"])
    assert_user_error(laser("encode", "text", "--model", "no-such-model"), "encode", "unknown model 'no-such-model'")
    assert_user_error(laser("encode", "text", "--model", "someone/not-cached"), "encode", "could not load")
    assert_user_error(laser("eval", "--model", model, "--modes", "latent:x"), "eval", "must be a positive integer")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["encode", "--model", "{model}", "--file", "{tmp}/missing.txt"], "--file {tmp}/missing.txt: no such file"),
        (["encode", "--model", "{model}"], "no texts: pass them as arguments or with --file"),
        (["encode", "text", "--model", "{model}", "-k", "0"], "num_thinking_steps must be >= 1"),
        (["demo", "--limit", "-1"], "--limit must be >= 0 (0 means every query), got -1"),
        (["export", "a", "b", "--model", "{model}"], "laser export takes one output folder, got 2: a b"),
        (["train", "{tmp}/nothing.jsonl", "--model", "{model}"], "training data file not found"),
        (["eval-mteb", "--model", "{model}"], "no tasks: pass --benchmark"),
    ],
)
def test_user_errors_are_one_line(tiny_dirs, tmp_path, capsys, argv, message):
    values = {"model": str(tiny_dirs["qwen3"]), "tmp": str(tmp_path)}
    argv = [part.format(**values) for part in argv]
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"laser {argv[0]}: error: ") and message.format(**values) in lines[-1], lines


def test_main_returns_the_status_instead_of_a_command_result(tiny_dirs, tmp_path, capsys):
    assert main(["export", str(tmp_path / "out"), "--model", str(tiny_dirs["qwen3"])]) == 0
    capsys.readouterr()
    assert main(["encode", "x", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "laser encode: error: unknown model 'no-such-model': not an alias (laser-qwen3, laser-qwen3-0.6b, "
        "laser-qwen3-4b, laser-qwen3-8b, smollm2), not an existing path, and not a Hugging Face Hub id of the "
        "form 'owner/name'"
    ]


# -- two independent evaluation paths agree ---------------------------------------------------------------


def test_eval_mteb_and_laser_eval_give_the_same_ndcg_on_pyref(tiny_dirs, tmp_path, capsys):
    """mteb (its own retrieval and pytrec_eval scoring) and ``laser eval`` (exact search, ir-measures) on the
    same model, K, instruction and data must report the same nDCG@10."""
    pytest.importorskip("mteb")
    common = ["--model", str(tiny_dirs["qwen3"]), "--max-seq-length", "48", "--instruction", "Find the passage"]
    common += ["-k", "2", "--no-progress", "--device", "cpu"]
    assert main(["eval", *common, "--modes", "latent", "--output-dir", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    [latent] = report["modes"]
    assert latent["num_thinking_steps"] == 2 and latent["num_queries"] == 123

    mteb_output = tmp_path / "mteb"
    assert main(["eval-mteb", *common, "--dataset", "pyref", "--output-dir", str(mteb_output)]) == 0
    [result_file] = [path for path in mteb_output.rglob("LaSERLocalRetrieval.json")]
    [scores] = json.loads(result_file.read_text())["scores"]["test"]
    assert scores["ndcg_at_10"] == pytest.approx(latent["metrics"]["ndcg@10"], abs=1e-3)
    assert 0.0 < scores["ndcg_at_10"] < 1.0
