"""Evaluation: metrics vs hand-computed values, the BEIR loader's errors, `laser eval` and `laser demo` end to end.

The end-to-end runs use the tiny random model (its retrieval quality is noise; what is checked is that
every mode runs, is scored and timed, and that the JSON and PNG are written).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from laser_integrations.cli import main
from laser_integrations.evaluation import (
    BeirFormatError,
    ExactSearch,
    Mode,
    evaluate_run,
    load_beir,
    parse_mode,
    per_query_scores,
)
from laser_integrations.evaluation.mteb import BRIGHT_INSTRUCTIONS, laser_instruction, task_names
from laser_integrations.evaluation.runner import not_laser_warning

# -- metrics ------------------------------------------------------------------------------------------------

QRELS = {"q1": {"d1": 1, "d2": 1}, "q2": {"d3": 1}, "q3": {"d4": 1, "d9": 0}, "q4": {"d5": 1}}
RUN = {
    "q1": {"d2": 0.9, "d5": 0.8, "d1": 0.7},  # relevant at ranks 1 and 3
    "q2": {"d4": 0.9, "d3": 0.8},  # relevant at rank 2
    "q3": {**{f"x{i}": 1.0 - i / 100 for i in range(10)}, "d4": 0.5},  # relevant at rank 11
    # q4: the run returned nothing, it must count as 0, not be skipped
}


def test_metrics_match_hand_computed_values():
    log2 = math.log2
    ndcg_q1 = (1 / log2(2) + 1 / log2(4)) / (1 / log2(2) + 1 / log2(3))
    ndcg_q2 = (1 / log2(3)) / 1
    expected = {
        "ndcg@10": (ndcg_q1 + ndcg_q2 + 0 + 0) / 4,
        "recall@10": (1 + 1 + 0 + 0) / 4,
        "recall@100": (1 + 1 + 1 + 0) / 4,
        "mrr@10": (1 + 1 / 2 + 0 + 0) / 4,  # q3's hit at rank 11 is past the cutoff
    }
    assert evaluate_run(QRELS, RUN) == pytest.approx(expected, abs=1e-9)
    per_query = per_query_scores(QRELS, RUN, ["ndcg@10"])["ndcg@10"]
    assert per_query == pytest.approx({"q1": ndcg_q1, "q2": ndcg_q2, "q3": 0.0, "q4": 0.0})


def test_graded_relevance_and_other_cutoffs():
    qrels = {"q": {"a": 2, "b": 1}}
    run = {"q": {"b": 2.0, "a": 1.0}}
    got = evaluate_run(qrels, run, ["ndcg@10", "recall@1", "precision@2"])
    # trec_eval (as in BEIR and MTEB) uses the relevance itself as the gain: ranks b (1) then a (2)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert got["ndcg@10"] == pytest.approx((1 / math.log2(2) + 2 / math.log2(3)) / ideal)
    assert got["recall@1"] == pytest.approx(0.5)
    assert got["precision@2"] == pytest.approx(1.0)


def test_unknown_metric_names_are_refused():
    with pytest.raises(ValueError, match="unknown metric 'ndcg'"):
        evaluate_run(QRELS, RUN, ["ndcg"])


# -- BEIR loader ------------------------------------------------------------------------------------------


def write_beir(folder: Path, corpus: list[str], queries: list[str], qrels: list[str]) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("\n".join(corpus) + "\n", encoding="utf8")
    (folder / "queries.jsonl").write_text("\n".join(queries) + "\n", encoding="utf8")
    (folder / "qrels" / "test.tsv").write_text("\n".join(qrels) + "\n", encoding="utf8")
    return folder


GOOD_CORPUS = [
    json.dumps({"_id": "d1", "title": "Defaults", "text": "Default values are evaluated once per definition."}),
    json.dumps({"_id": "d2", "title": "Globals", "text": "The global statement binds a name at module level."}),
    json.dumps({"_id": "d3", "title": "", "text": "A with block calls __exit__ when it ends."}),
    json.dumps({"_id": "d4", "text": "Slices select items from i up to but not including j."}),
]
GOOD_QUERIES = [
    json.dumps({"_id": "q1", "text": "why does my default list keep growing?"}),
    json.dumps({"_id": "q2", "text": "how do I change a module-level variable in a function?"}),
    json.dumps({"_id": "q3", "text": "what runs when a with block finishes?"}),
]
GOOD_QRELS = ["query-id\tcorpus-id\tscore", "q1\td1\t1", "q2\td2\t1", "q3\td3\t1"]


@pytest.fixture
def toy_dataset(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "toy", GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS)


def test_the_bundled_dataset_loads_and_is_consistent():
    dataset = load_beir("pyref")
    assert (len(dataset.corpus), len(dataset.queries)) == (275, 123)
    assert sum(len(docs) for docs in dataset.qrels.values()) == 194
    assert dataset.limited(5).queries == dict(list(dataset.queries.items())[:5])


def test_a_toy_dataset_loads(toy_dataset):
    dataset = load_beir(toy_dataset)
    assert dataset.name == "toy"
    assert dataset.corpus["d1"].as_text() == "Defaults Default values are evaluated once per definition."
    assert dataset.corpus["d4"].as_text() == "Slices select items from i up to but not including j."
    assert dataset.qrels == {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}}


@pytest.mark.parametrize(
    ("file", "edit", "line", "message"),
    [
        ("corpus.jsonl", lambda c, q, r: (c[:2] + ['{"_id": "d9", "text": '] + c[2:], q, r), 3, "not valid JSON"),
        ("corpus.jsonl", lambda c, q, r: (c + ['{"text": "no id"}'], q, r), 5, "'_id' must be a non-empty string"),
        ("corpus.jsonl", lambda c, q, r: (c + ['{"_id": "d1", "text": "again"}'], q, r), 5, "duplicate _id 'd1'"),
        ("corpus.jsonl", lambda c, q, r: (c + ['["a list"]'], q, r), 5, "expected a JSON object"),
        ("queries.jsonl", lambda c, q, r: (c, q + ['{"_id": "q4", "text": 7}'], r), 4, "'text' must be a string"),
        ("test.tsv", lambda c, q, r: (c, q, r + ["q1\td2"]), 5, "expected 3 tab-separated columns"),
        ("test.tsv", lambda c, q, r: (c, q, r + ["q1\td2\tyes"]), 5, "score must be an integer"),
        ("test.tsv", lambda c, q, r: (c, q, r + ["q1\tnope\t1"]), 5, "corpus-id 'nope' is not in corpus.jsonl"),
        ("test.tsv", lambda c, q, r: (c, q, r + ["q7\td1\t1"]), 5, "query-id 'q7' is not in queries.jsonl"),
    ],
)
def test_malformed_files_are_rejected_naming_file_and_line(tmp_path, file, edit, line, message):
    folder = write_beir(tmp_path / "bad", *edit(GOOD_CORPUS, GOOD_QUERIES, GOOD_QRELS))
    with pytest.raises(BeirFormatError, match=message) as caught:
        load_beir(folder)
    assert str(caught.value).startswith(f"{next(folder.rglob(file))}:{line}: ")
    assert (caught.value.path.name, caught.value.line) == (file, line)


def test_missing_files_are_named(tmp_path, toy_dataset):
    (toy_dataset / "qrels" / "test.tsv").unlink()
    with pytest.raises(FileNotFoundError, match=r"test\.tsv is missing"):
        load_beir(toy_dataset)


# -- modes and search -----------------------------------------------------------------------------------


def test_modes_parse_and_bad_ones_are_named():
    assert parse_mode("single") == Mode("single", "latent", 1)
    assert parse_mode("latent", default_steps=3) == Mode("latent", "latent", 3)
    assert parse_mode("latent:6") == Mode("latent-k6", "latent", 6)
    assert parse_mode("explicit") == Mode("explicit", "explicit")
    with pytest.raises(ValueError, match="unknown mode 'hybrid'"):
        parse_mode("hybrid")
    with pytest.raises(ValueError, match="num_thinking_steps must be >= 1"):
        parse_mode("latent:0")


def test_exact_search_ranks_by_dot_product():
    search = ExactSearch(["a", "b", "c"], np.eye(3, dtype=np.float32))
    [hits] = search.search(np.array([[0.1, 0.7, 0.5]], dtype=np.float32), top_k=2)
    assert list(hits) == ["b", "c"] and hits["b"] == pytest.approx(0.7)


# -- laser eval / laser demo end to end (tiny model) --------------------------------------------------------


def laser(*argv: str) -> None:
    """Run ``laser ARGV`` in this process and require success."""
    assert main(list(argv)) == 0


def read_outputs(folder: Path, stem: str) -> dict:
    assert (folder / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return json.loads((folder / f"{stem}.json").read_text(encoding="utf8"))


def test_laser_eval_runs_every_mode_and_writes_json_and_png(tiny_dirs, toy_dataset, tmp_path, capsys):
    output = tmp_path / "eval"
    laser(
        "eval", "--model", str(tiny_dirs["qwen3"]), "--dataset", str(toy_dataset),
        "--modes", "single,latent:2", "explicit", "--max-new-tokens", "2", "--batch-size", "2",
        "--output-dir", str(output), "--no-progress", "--device", "cpu",
    )  # fmt: skip
    report = read_outputs(output, "eval")
    assert [mode["mode"] for mode in report["modes"]] == ["single", "latent-k2", "explicit"]
    assert [mode["num_thinking_steps"] for mode in report["modes"]] == [1, 2, None]
    for mode in report["modes"]:
        assert set(mode["metrics"]) == {"ndcg@10", "recall@10", "recall@100", "mrr@10"}
        assert mode["num_queries"] == 3 and mode["latency_ms_p95"] >= mode["latency_ms_median"] > 0
        assert mode["metrics"]["recall@100"] == 1.0  # 4 passages: every one is in the top 100
    explicit = report["modes"][2]
    assert explicit["generate_seconds"] > 0 and set(explicit["rationales"]) == {"q1", "q2", "q3"}
    assert report["cost_vs_explicit"]["explicit"] == 1.0
    assert report["num_documents"] == 4 and report["document_steps"] == 3
    printed = capsys.readouterr().out
    assert "latent-k2" in printed and "of the rewrite chain's time" in printed


def test_laser_demo_answers_through_qdrant_and_reuses_its_index(tiny_dirs, tmp_path, capsys):
    argv = [
        "demo", "--model", str(tiny_dirs["qwen3"]), "--limit", "5", "--max-new-tokens", "2",
        "--max-seq-length", "48", "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "demo"),
        "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    laser(*argv)
    report = read_outputs(tmp_path / "demo", "demo")
    assert [mode["mode"] for mode in report["modes"]] == ["single", "latent", "explicit"]
    assert all(mode["num_queries"] == 5 for mode in report["modes"])
    assert report["num_documents"] == 275 and "qdrant local mode" in report["search"]
    assert report["index_seconds"] is not None
    first = capsys.readouterr().out
    assert "indexed 275 passages" in first and "faster" in first

    laser(*argv)
    assert "reusing the index" in capsys.readouterr().out
    assert read_outputs(tmp_path / "demo", "demo")["index_seconds"] is None


def test_the_demo_model_is_labelled_as_not_laser(tiny_dirs):
    from laser_integrations import load_model

    model = load_model(str(tiny_dirs["llama"]), device="cpu")
    assert "not a released LaSER checkpoint" in not_laser_warning(model)
    model[0].base_model = "smollm2"
    assert "is not a trained LaSER model" in not_laser_warning(model)
    model[0].base_model = "Alibaba-NLP/LaSER-Qwen3-0.6B"
    assert not_laser_warning(model) is None


# -- MTEB (pure parts; a run needs `pip install mteb`) ------------------------------------------------------


def test_mteb_tasks_and_laser_instructions():
    assert len(task_names(["BRIGHT"])) == 12 and set(task_names(["bright"])) == set(BRIGHT_INSTRUCTIONS)
    assert task_names(["FollowIR", "BrowseCompPlus"])[-1] == "BrowseCompPlusRetrieval"
    assert laser_instruction("BrightLeetcodeRetrieval").startswith("Given a coding problem")
    assert laser_instruction("BrowseCompPlusRetrieval", {"query": "Given a question"}) == "Given a question"
    assert laser_instruction("SomeTask") == "Retrieval relevant passage for the given query."
    with pytest.raises(ValueError, match="unknown benchmark 'MSMARCO'"):
        task_names(["MSMARCO"])


def test_mteb_runs_a_local_task(tiny_model, toy_dataset, tmp_path):
    pytest.importorskip("mteb")
    from laser_integrations.evaluation.mteb import beir_task, run_mteb

    prompts = dict(tiny_model.prompts)
    result = run_mteb(tiny_model, [beir_task(load_beir(toy_dataset))], output_folder=tmp_path, show_progress_bar=False)
    [task] = result.task_results
    assert 0.0 <= task.get_score() <= 1.0
    assert tiny_model.prompts == prompts
