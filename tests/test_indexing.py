"""``laser index`` / ``index_corpus``: every engine in this process (local, pool), resumability after a SIGKILL,
bad input, provenance, write failures, sources and the command line. Ray: tests/test_indexing_ray.py."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from qdrant_client import QdrantClient

from laser_integrations import load_model
from laser_integrations.cli import main
from laser_integrations.embedder import EmbeddingProvenance
from laser_integrations.evaluation.beir import Passage, bundled_dataset_path, load_beir
from laser_integrations.indexing import (
    BadRowError,
    Fields,
    IndexReport,
    PoolEngine,
    RetryPolicy,
    document_point_id,
    documents,
    index_corpus,
    open_source,
)
from laser_integrations.indexing.job import embed_checked, model_provenance
from laser_integrations.qdrant import (
    ProvenanceMismatchError,
    connect,
    content_id,
    ensure_collection,
    stored_provenance,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PYREF = bundled_dataset_path("pyref")
SEQ = 64
FAST = RetryPolicy(attempts=3, backoff=0.0)


def tiny_indexing_model(tiny_dirs):
    """The tiny Qwen3 with short truncation (fast); its own instance, so the session's tiny_model is untouched."""
    return load_model(str(tiny_dirs["qwen3"]), device="cpu", max_seq_length=SEQ)


def expected_vectors(model, passages) -> dict[str, np.ndarray]:
    """What every engine must store: ``encode_document`` of each passage's title + text."""
    ids = list(passages)
    vectors = model.encode_document([passages[i].as_text() for i in ids], batch_size=32, convert_to_numpy=True)
    return dict(zip(ids, vectors, strict=True))


@pytest.fixture(scope="module")
def model(tiny_dirs):
    return tiny_indexing_model(tiny_dirs)


@pytest.fixture(scope="module")
def passages():
    return load_beir(PYREF).corpus


@pytest.fixture(scope="module")
def expected(model, passages) -> dict[str, np.ndarray]:
    return expected_vectors(model, passages)


def stored(client: QdrantClient, collection: str = "docs") -> dict[str, tuple[str, dict, np.ndarray]]:
    """``{doc_id: (point id, payload, vector)}`` of every point (and no doc id twice)."""
    points, offset = [], None
    while True:
        batch, offset = client.scroll(collection, limit=1000, offset=offset, with_payload=True, with_vectors=True)
        points += batch
        if offset is None:
            break
    by_doc = {
        point.payload["metadata"]["doc_id"]: (str(point.id), point.payload, np.asarray(point.vector))
        for point in points
    }
    assert len(by_doc) == len(points), "a document id is stored twice"
    return by_doc


def assert_matches(client: QdrantClient, expected: dict[str, np.ndarray], passages, collection: str = "docs") -> None:
    points = stored(client, collection)
    assert set(points) == set(expected)
    for doc_id, (point_id, payload, vector) in points.items():
        want = expected[doc_id]
        cosine = float(vector @ want / (np.linalg.norm(vector) * np.linalg.norm(want)))
        assert cosine >= 0.99999, (doc_id, cosine)
        assert point_id == document_point_id(doc_id)
        assert payload == {
            "page_content": passages[doc_id].as_text(),
            "metadata": {"doc_id": doc_id, "title": passages[doc_id].title},
        }


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text(
        "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf8"
    )
    return path


def small_corpus(tmp_path: Path, count: int) -> Path:
    lines = (PYREF / "corpus.jsonl").read_text(encoding="utf8").splitlines()[:count]
    return write_jsonl(tmp_path / "small.jsonl", lines)


# -- engines -------------------------------------------------------------------------------------------------


def test_local_engine_stores_every_passage_and_a_rerun_embeds_nothing(model, expected, passages, tmp_path):
    path = tmp_path / "qdrant"

    first = index_corpus(model, PYREF, collection="docs", path=path, chunk_size=100, show_progress_bar=False)
    again = index_corpus(model, PYREF, collection="docs", path=path, chunk_size=100, show_progress_bar=False)

    assert (first.embedded, first.skipped_present, first.failed, first.points) == (275, 0, 0, 275)
    assert (again.embedded, again.skipped_present, again.failed, again.points) == (0, 275, 0, 275)
    assert first.ok and again.ok and "275 embedded" in first.summary()
    client = connect(path)
    try:
        assert_matches(client, expected, passages)
        assert stored_provenance(client, "docs") == model_provenance(model)
    finally:
        client.close()


def test_langchain_and_the_evaluation_searcher_read_the_collection(model, passages):
    from langchain_qdrant import QdrantVectorStore

    from laser_integrations.evaluation.search import QdrantSearch
    from laser_integrations.langchain import LaSEREmbeddings

    client = connect()
    index_corpus(model, PYREF, collection="docs", client=client, show_progress_bar=False)
    query = "Assert statements are a convenient way to insert debugging assertions"

    store = QdrantVectorStore(client, "docs", LaSEREmbeddings(model), validate_collection_config=False)
    found = store.similarity_search(query, k=3)
    hits = QdrantSearch(client, "docs").search(model.encode_query([query]), top_k=3)[0]

    assert [doc.metadata["doc_id"] for doc in found] == list(hits)
    assert found[0].page_content == passages[found[0].metadata["doc_id"]].as_text()


def test_pool_engine_with_two_cpu_processes_stores_the_same_points(model, expected, passages):
    client = connect()
    engine = PoolEngine(["cpu", "cpu"])

    first = index_corpus(model, PYREF, collection="docs", client=client, engine=engine, show_progress_bar=False)
    rerun_engine = PoolEngine(["cpu", "cpu"])
    again = index_corpus(model, PYREF, collection="docs", client=client, engine=rerun_engine, show_progress_bar=False)

    assert (first.engine, first.embedded, first.skipped_present, first.points) == ("pool", 275, 0, 275)
    assert (again.embedded, again.skipped_present) == (0, 275)
    assert rerun_engine.pool is None, "a rerun with nothing to embed must not start the processes"
    assert_matches(client, expected, passages)


def test_a_killed_job_loses_nothing_and_the_rerun_embeds_only_the_rest(model, tiny_dirs, tmp_path):
    path = tmp_path / "qdrant"
    script = textwrap.dedent(
        f"""
        import time
        from laser_integrations import load_model
        from laser_integrations.indexing import index_corpus

        model = load_model({str(tiny_dirs["qwen3"])!r}, device="cpu", max_seq_length={SEQ})
        encode = model.encode_document

        def slow(*args, **kwargs):  # slow enough to be killed half-way
            vectors = encode(*args, **kwargs)
            print("embedded a chunk", flush=True)
            time.sleep(0.3)
            return vectors

        model.encode_document = slow
        index_corpus(model, {str(PYREF)!r}, collection="docs", path={str(path)!r}, chunk_size=25,
                     show_progress_bar=False)
        print("finished", flush=True)
        """
    )
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in job.stdout], daemon=True)
    reader.start()
    try:
        deadline, chunks = time.monotonic() + 120, 0
        while chunks < 4:  # wait for 4 embedded chunks (2 or 3 written), at most 120 s
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert "finished" not in line, "the job ended before it could be killed"
            chunks += "embedded a chunk" in line
        os.kill(job.pid, signal.SIGKILL)
    finally:
        job.kill()
        job.wait(timeout=60)
        reader.join(timeout=10)  # the pipe ends with the process
        job.stdout.close()
    client = connect(path)
    before = client.count("docs", exact=True).count
    client.close()
    assert 0 < before < 275

    rerun = index_corpus(model, PYREF, collection="docs", path=path, chunk_size=25, show_progress_bar=False)

    assert (rerun.embedded, rerun.skipped_present, rerun.points) == (275 - before, before, 275)
    client = connect(path)
    assert len(stored(client)) == 275
    client.close()


# -- what must be refused or reported ---------------------------------------------------------------------------


def test_a_provenance_mismatch_is_refused_before_anything_is_embedded(model, monkeypatch):
    client = connect()
    other = EmbeddingProvenance(**{**model_provenance(model).to_dict(), "num_thinking_steps": 6})
    ensure_collection(client, "docs", other)
    monkeypatch.setattr(model, "encode_document", lambda *a, **k: pytest.fail("embedded despite the mismatch"))

    with pytest.raises(ProvenanceMismatchError, match="num_thinking_steps=6"):
        index_corpus(model, PYREF, collection="docs", client=client, show_progress_bar=False)

    assert client.count("docs", exact=True).count == 0


def test_a_malformed_line_fails_with_file_and_line_and_keeps_the_rows_before(model, tmp_path):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "alpha"}, {"_id": "b", "text": "beta"}, "{oops"])
    client = connect()

    with pytest.raises(BadRowError, match=rf"^{corpus}:3: not valid JSON"):
        index_corpus(model, corpus, collection="docs", client=client, chunk_size=1, show_progress_bar=False)

    assert client.count("docs", exact=True).count == 2


def test_skip_bad_rows_counts_every_kind_of_bad_row(model, tmp_path):
    rows = [
        {"_id": "good-1", "text": "a fine document"},
        "not json",
        '["a", "list"]',
        {"_id": "no-text"},
        {"_id": "empty", "text": "  ", "title": ""},
        {"_id": ["not", "an", "id"], "text": "x"},
        {"_id": "bad-title", "text": "x", "title": 3},
        {"_id": 7, "text": "an integer id is fine"},
    ]
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    client = connect()

    report = index_corpus(model, corpus, collection="docs", client=client, skip_bad_rows=True, show_progress_bar=False)

    assert (report.embedded, report.bad_rows, report.points) == (2, 6, 2)
    assert report.bad_row_examples[0] == f"{corpus}:2: not valid JSON (Expecting value at column 1)"
    assert any(":5: document 'empty' has no text to embed" in example for example in report.bad_row_examples)
    assert report.ok and "6 bad rows skipped" in report.summary()


def test_a_document_that_tokenizes_to_nothing_is_named_or_skipped(tiny_dirs):
    plain = load_model(str(tiny_dirs["qwen3"]), device="cpu", chat_template=False, max_seq_length=SEQ)

    def encode(texts):
        return plain.encode_document(texts, convert_to_numpy=True)

    with pytest.raises(BadRowError, match="^c.jsonl:2: document 'd2' tokenizes to nothing"):
        embed_checked(
            plain, encode, ["fine", ""], ["c.jsonl:1", "c.jsonl:2"], skip_bad_rows=False, doc_ids=["d1", "d2"]
        )
    vectors, kept, bad = embed_checked(plain, encode, ["fine", ""], ["c.jsonl:1", "c.jsonl:2"], skip_bad_rows=True)
    assert vectors.shape[0] == 1 and kept == [0] and [row.where for row in bad] == ["c.jsonl:2"]


def test_an_empty_corpus_makes_an_empty_collection_with_its_provenance(model, tmp_path):
    client = connect()
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf8")

    report = index_corpus(model, tmp_path / "empty.jsonl", collection="docs", client=client, show_progress_bar=False)

    assert (report.rows, report.points) == (0, 0) and report.ok
    assert stored_provenance(client, "docs") == model_provenance(model)


def test_a_failed_write_is_retried_then_reported_with_the_ids_that_did_not_land(model, tmp_path, monkeypatch):
    corpus = small_corpus(tmp_path, 40)
    client = connect()
    real_upsert, calls = client.upsert, []
    doomed = document_point_id("booleans-2")  # the 20th row: in the third batch of 8

    def flaky(collection_name, points, **kwargs):
        calls.append([point.id for point in points])
        if len(calls) == 1 or doomed in calls[-1]:  # one transient failure, and one batch that never lands
            raise ConnectionError("qdrant went away")
        return real_upsert(collection_name, points=points, **kwargs)

    monkeypatch.setattr(client, "upsert", flaky)
    report = index_corpus(
        model, corpus, collection="docs", client=client, write_batch_size=8, retry=FAST, show_progress_bar=False
    )

    doomed_batch = next(batch for batch in calls if doomed in batch)
    assert sum(batch == doomed_batch for batch in calls) == FAST.attempts
    assert sorted(report.failed_ids) == sorted(doomed_batch) and report.failed == 8
    assert (report.embedded, report.points, report.ok) == (32, 32, False)
    assert "ConnectionError: qdrant went away" in report.summary()

    monkeypatch.setattr(client, "upsert", real_upsert)
    healed = index_corpus(model, corpus, collection="docs", client=client, show_progress_bar=False)
    assert (healed.embedded, healed.skipped_present, healed.points) == (8, 32, 40)


def test_a_job_stops_when_qdrant_keeps_refusing_writes(model, tmp_path, monkeypatch):
    corpus = small_corpus(tmp_path, 40)
    client = connect()

    def down(*args, **kwargs):
        raise ConnectionError("connection refused")

    monkeypatch.setattr(client, "upsert", down)
    report = index_corpus(
        model, corpus, collection="docs", client=client, chunk_size=5, retry=FAST, show_progress_bar=False
    )

    assert report.aborted is not None and not report.ok
    assert report.failed < 40 and report.embedded == 0


# -- sources ---------------------------------------------------------------------------------------------------


def test_parquet_with_named_fields_and_payload(model, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "key": ["p1", "p2", "p3"],
            "body": ["first body", "second body", "third body"],
            "heading": ["One", None, "Three"],
            "url": ["u1", "u2", "u3"],
            "year": [2001, 2002, 2003],
        }
    )
    pq.write_table(table, tmp_path / "c.parquet", row_group_size=2)
    fields = Fields(id="key", text="body", title="heading", payload=("url", "year"))
    client = connect()

    report = index_corpus(
        model, tmp_path / "c.parquet", collection="docs", client=client, fields=fields, show_progress_bar=False
    )

    point = client.retrieve("docs", [document_point_id("p1")], with_payload=True)[0]
    assert report.embedded == 3
    assert point.payload == {
        "page_content": Passage("p1", "first body", "One").as_text(),
        "metadata": {"doc_id": "p1", "title": "One", "url": "u1", "year": 2001},
    }
    assert [d.where for d in documents(open_source(tmp_path / "c.parquet", fields))][-1].endswith("c.parquet:row 3")
    with pytest.raises(ValueError, match="no column 'text'"):
        open_source(tmp_path / "c.parquet")


def test_a_saved_dataset_and_content_ids(tmp_path):
    import datasets

    rows = [{"text": "no id here", "lang": "en"}, {"text": "nor here", "lang": "fr"}]
    datasets.DatasetDict({"corpus": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "saved")

    source = open_source(tmp_path / "saved", Fields(payload=("lang",)))
    found = list(documents(source))

    assert source.fields.id is None  # no _id/id column: ids from the content
    assert [d.point_id for d in found] == [
        content_id("no id here", {"lang": "en"}),
        content_id("nor here", {"lang": "fr"}),
    ]
    assert found[0].metadata == {"doc_id": found[0].point_id, "title": "", "lang": "en"}
    with pytest.raises(ValueError, match="no split 'train'"):
        open_source(tmp_path / "saved", split="train")
    with pytest.raises(ValueError, match="clash"):
        Fields(payload=("title",))
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "missing.jsonl")


# -- the command line -------------------------------------------------------------------------------------------


def test_laser_index_command(tiny_dirs, tmp_path, capsys):
    corpus = small_corpus(tmp_path, 12)
    base = ["index", str(corpus), "-m", str(tiny_dirs["qwen3"]), "--max-seq-length", str(SEQ), "-c", "docs"]
    base += ["--qdrant-path", str(tmp_path / "qdrant"), "--no-progress"]

    assert main(base) == 0
    assert "12 embedded" in capsys.readouterr().err
    assert main(base) == 0
    assert "0 embedded, 12 already present" in capsys.readouterr().err

    assert main([*base, "-k", "2"]) == 2
    assert "num_thinking_steps=3" in capsys.readouterr().err
    assert main([*base[:1], str(tmp_path / "nope.jsonl"), *base[2:]]) == 2
    assert "no such file" in capsys.readouterr().err
    write_jsonl(tmp_path / "bad.jsonl", [{"_id": "x", "text": "fine"}, {"_id": "y"}])
    assert main([*base[:1], str(tmp_path / "bad.jsonl"), *base[2:], "-c", "other"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == f"laser index: error: {tmp_path / 'bad.jsonl'}:2: no 'text' field (the text to embed; " + (
        "name it with --text-field)"
    )
    assert main([*base, "--devices", "cpu", "--engine", "local"]) == 2


def test_the_command_exits_1_when_documents_did_not_land(tiny_dirs, tmp_path, monkeypatch, capsys):
    from laser_integrations.indexing import job

    corpus = small_corpus(tmp_path, 4)
    monkeypatch.setattr(
        job,
        "write_points",
        lambda client, collection, points, **kwargs: job.WriteOutcome(
            0, [p.id for p in points], "ConnectionError: down"
        ),
    )
    status = main(
        [
            "index",
            str(corpus),
            "-m",
            str(tiny_dirs["qwen3"]),
            "-c",
            "docs",
            "--qdrant-path",
            str(tmp_path / "q"),
            "--no-progress",
        ]
    )
    assert status == 1
    assert "4 failed to write" in capsys.readouterr().err


def test_the_report_adds_partial_counts():
    report = IndexReport("docs", "ray")
    report.add({"embedded": 3, "failed_ids": ["a"], "bad_rows": 1, "bad_row_examples": ["f:1: x"]})
    report.add({"embedded": 2, "skipped_present": 4})
    assert (report.embedded, report.failed, report.bad_rows, report.skipped_present, report.rows) == (5, 1, 1, 4, 11)
