"""``laser index`` / ``index_corpus``: every engine in this process (local, pool) on both embedded stores (Qdrant
Edge and qdrant-client's local mode), resumability after a SIGKILL, bad input, duplicates, provenance, the
local-mode fence, write failures, sources and the command line. Ray: tests/test_indexing_ray.py."""

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
import warnings
from pathlib import Path

import numpy as np
import pytest

from laser_integrations import load_model
from laser_integrations.cli import main
from laser_integrations.evaluation.beir import Passage, bundled_dataset_path, load_beir
from laser_integrations.indexing import (
    BadRowError,
    CapacityWarning,
    DuplicateIdError,
    Fields,
    LocalEngine,
    PoolEngine,
    RetryPolicy,
    document_point_id,
    documents,
    index_corpus,
    open_source,
)
from laser_integrations.indexing.engines import embed_texts
from laser_integrations.provenance import EmbeddingProvenance, ProvenanceMismatchError, model_provenance
from laser_integrations.qdrant import content_id
from laser_integrations.stores import StoreCapacityError, open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PYREF = bundled_dataset_path("pyref")
SEQ = 64
FAST = RetryPolicy(attempts=3, backoff=0.0)
STORES = ("local", "edge")


def tiny_indexing_model(tiny_dirs):
    """The tiny Qwen3 with short truncation (fast); its own instance, so the session's tiny_model is untouched."""
    return load_model(str(tiny_dirs["qwen3"]), device="cpu", max_seq_length=SEQ)


def expected_vectors(model, passages) -> dict[str, np.ndarray]:
    """What every engine must store: ``encode_document`` of each passage's title + text."""
    ids = list(passages)
    vectors = model.encode_document([passages[i].as_text() for i in ids], batch_size=32, convert_to_numpy=True)
    return dict(zip(ids, vectors, strict=True))


def open_kind(kind: str, folder: Path | None = None):
    """A store of ``kind`` on ``folder`` (local mode in memory without one)."""
    if kind == "edge":
        return open_store("edge", path=folder)
    return open_store("local", path=folder, collection="docs")


@pytest.fixture(scope="module")
def model(tiny_dirs):
    return tiny_indexing_model(tiny_dirs)


@pytest.fixture(scope="module")
def passages():
    return load_beir(PYREF).corpus


@pytest.fixture(scope="module")
def expected(model, passages) -> dict[str, np.ndarray]:
    return expected_vectors(model, passages)


@pytest.fixture(params=STORES)
def kind(request) -> str:
    return request.param


@pytest.fixture
def new_store(kind, tmp_path):
    """``new_store()``: a fresh store of ``kind`` in its own folder, closed after the test."""
    opened = []

    def new():
        opened.append(open_kind(kind, tmp_path / f"store-{len(opened)}"))
        return opened[-1]

    yield new
    for store in opened:
        store.close()


def assert_matches(store, expected: dict[str, np.ndarray], passages) -> None:
    """The store holds exactly one point per passage: its vector (cosine >= 0.99999), its id and its payload."""
    assert store.count() == len(expected)
    for doc_id, vector in expected.items():  # passages whose first SEQ tokens agree share a vector: rank them all
        [hit] = [hit for hit in store.search(vector, limit=len(expected)) if hit.id == document_point_id(doc_id)]
        assert hit.score >= 0.99999, (doc_id, hit)
        assert hit.payload == {
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


def index(model, corpus, store, **options):
    return index_corpus(model, corpus, store=store, show_progress_bar=False, **options)


class Wrapped:
    """A store with some methods replaced (``Wrapped(store, upsert=...)``), the rest passed through."""

    def __init__(self, inner, **replaced) -> None:
        self.inner = inner
        self.__dict__.update(replaced)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


def never_embeds(*args, **kwargs):
    pytest.fail("embedded a document")


# -- engines, on both stores -----------------------------------------------------------------------------------


def test_local_engine_stores_every_passage_and_a_rerun_embeds_nothing(
    kind, model, expected, passages, tmp_path, monkeypatch
):
    with open_kind(kind, tmp_path / "store") as store:
        first = index(model, PYREF, store, chunk_size=100)
    with open_kind(kind, tmp_path / "store") as store:  # reopened: what a second run of the command sees
        monkeypatch.setattr(model, "encode_document", never_embeds)
        again = index(model, PYREF, store, chunk_size=100)
        monkeypatch.undo()

        assert (first.embedded, first.skipped_present, first.failed, first.points) == (275, 0, 0, 275)
        assert (again.embedded, again.skipped_present, again.failed, again.points) == (0, 275, 0, 275)
        assert first.ok and again.ok and "275 embedded" in first.summary()
        assert_matches(store, expected, passages)
        assert store.provenance() == model_provenance(model)


def test_langchain_and_the_evaluation_searcher_read_the_collection(model, passages):
    from langchain_qdrant import QdrantVectorStore

    from laser_integrations.evaluation.search import StoreSearch
    from laser_integrations.langchain import LaSEREmbeddings

    store = open_kind("local")
    index(model, PYREF, store)
    query = "Assert statements are a convenient way to insert debugging assertions"

    framework = QdrantVectorStore(store.client, "docs", LaSEREmbeddings(model), validate_collection_config=False)
    found = framework.similarity_search(query, k=3)
    hits = StoreSearch(store).search(model.encode_query([query]), top_k=3)[0]

    assert [doc.metadata["doc_id"] for doc in found] == list(hits)
    assert found[0].page_content == passages[found[0].metadata["doc_id"]].as_text()


def test_pool_engine_with_two_cpu_processes_stores_the_same_points(kind, model, expected, passages, tmp_path):
    with open_kind(kind, tmp_path / "store") as store:
        first = index(model, PYREF, store, engine=PoolEngine(["cpu", "cpu"]))
        rerun_engine = PoolEngine(["cpu", "cpu"])
        again = index(model, PYREF, store, engine=rerun_engine)

        assert (first.engine, first.embedded, first.skipped_present, first.points) == ("pool", 275, 0, 275)
        assert (again.embedded, again.skipped_present) == (0, 275)
        assert rerun_engine.pool is None, "a rerun with nothing to embed must not start the processes"
        assert_matches(store, expected, passages)


def test_a_killed_job_loses_nothing_and_the_rerun_embeds_only_the_rest(kind, model, tiny_dirs, tmp_path):
    folder = tmp_path / "store"
    script = textwrap.dedent(
        f"""
        import time
        from laser_integrations import load_model
        from laser_integrations.indexing import index_corpus
        from test_indexing import open_kind

        model = load_model({str(tiny_dirs["qwen3"])!r}, device="cpu", max_seq_length={SEQ})
        encode = model.encode_document

        def slow(*args, **kwargs):  # slow enough to be killed half-way
            vectors = encode(*args, **kwargs)
            print("embedded a chunk", flush=True)
            time.sleep(0.3)
            return vectors

        model.encode_document = slow
        store = open_kind({kind!r}, {str(folder)!r})
        index_corpus(model, {str(PYREF)!r}, store=store, chunk_size=25, show_progress_bar=False)
        print("finished", flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    job = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
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
    with open_kind(kind, folder) as store:
        before = store.count()
        assert 0 < before < 275

        rerun = index(model, PYREF, store, chunk_size=25)

        assert (rerun.embedded, rerun.skipped_present, rerun.points) == (275 - before, before, 275)
        assert store.count() == 275


# -- what must be refused before anything is embedded --------------------------------------------------------------


def test_a_provenance_mismatch_is_refused_before_anything_is_embedded(kind, model, tmp_path, monkeypatch):
    other = EmbeddingProvenance(**{**model_provenance(model).to_dict(), "num_thinking_steps": 6})
    with open_kind(kind, tmp_path / "store") as store:
        store.ensure(other)
        monkeypatch.setattr(model, "encode_document", never_embeds)

        with pytest.raises(ProvenanceMismatchError, match="num_thinking_steps=6"):
            index(model, PYREF, store)

        assert store.count() == 0


def test_a_store_indexed_at_128_tokens_refuses_a_run_at_256(kind, tiny_dirs, tmp_path):
    corpus = small_corpus(tmp_path, 6)
    spec = str(tiny_dirs["qwen3"])
    with open_kind(kind, tmp_path / "store") as store:
        first = index(spec, corpus, store, load_options={"device": "cpu", "max_seq_length": 128})
        assert first.embedded == 6

        with pytest.raises(ProvenanceMismatchError, match=r"max_seq_length=128.*max_seq_length=256"):
            index(spec, corpus, store, load_options={"device": "cpu", "max_seq_length": 256})

        assert store.count() == 6 and store.provenance().max_seq_length == 128


def test_a_second_process_on_the_folder_is_refused_before_the_model_loads(
    kind, tiny_dirs, tmp_path, monkeypatch, capsys
):
    import laser_integrations.loading as loading

    corpus = small_corpus(tmp_path, 3)
    folder = tmp_path / "store"
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    argv = ["index", str(corpus), "-m", str(tiny_dirs["qwen3"]), "--store", kind, "--path", str(folder)]
    script = (
        "import sys, time; from test_indexing import open_kind; "
        f"store = open_kind({kind!r}, {str(folder)!r}); print('open', flush=True); time.sleep(60)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    holder = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "open"
        assert main([*argv, "--no-progress"]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"laser index: error: {folder}: ") and "another" in line
    finally:
        holder.kill()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_the_local_mode_fence_warns_and_refuses_before_anything_is_embedded(model, tmp_path, monkeypatch):
    import laser_integrations.stores.qdrant as qdrant_store

    corpus = small_corpus(tmp_path, 12)
    monkeypatch.setattr(qdrant_store, "LOCAL_MODE_WARN_POINTS", 10)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CapacityWarning)
        encode = model.encode_document

        def after_the_warning(*args, **kwargs):
            assert caught, "embedded before the local-mode warning"
            return encode(*args, **kwargs)

        monkeypatch.setattr(model, "encode_document", after_the_warning)
        with open_kind("local", tmp_path / "local") as store:
            report = index(model, corpus, store)
    [warning] = [w for w in caught if w.category is CapacityWarning]
    assert str(warning.message).startswith(f"qdrant:local:{tmp_path / 'local'}/docs will hold 12 points; local mode")
    assert "--store edge" in str(warning.message) and report.embedded == 12
    assert str(warning.message) in report.summary()

    monkeypatch.setattr(qdrant_store, "local_mode_max_points", lambda dimension, **_: 11)
    monkeypatch.setattr(model, "encode_document", never_embeds)
    with open_kind("local", tmp_path / "fresh") as store:
        with pytest.raises(StoreCapacityError, match=r"would hold 12 points, more than the 11 .* --store edge"):
            index(model, corpus, store)
        assert store.count() == 0
    with open_kind("local", tmp_path / "local") as store:  # a resumed job: counted from the store
        with pytest.raises(StoreCapacityError, match="would hold 12 points"):
            index(model, small_corpus(tmp_path, 3), store)


def test_the_fence_on_the_command_line_exits_2_before_the_model_loads(tiny_dirs, tmp_path, monkeypatch, capsys):
    import laser_integrations.loading as loading
    import laser_integrations.stores.qdrant as qdrant_store

    corpus = small_corpus(tmp_path, 12)
    monkeypatch.setattr(qdrant_store, "local_mode_max_points", lambda dimension, **_: 11)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    argv = ["index", str(corpus), "-m", str(tiny_dirs["qwen3"]), "--store", "local", "--path", str(tmp_path / "q")]

    assert main([*argv, "--no-progress"]) == 2
    precision, line = capsys.readouterr().err.strip().splitlines()
    assert precision.startswith("laser index: dtype float32 (")
    assert line.startswith(f"laser index: error: qdrant:local:{tmp_path / 'q'}/laser would hold 12 points")
    assert "would hold 12 points, more than the 11 it could reopen" in line and "--store edge" in line


# -- bad input ---------------------------------------------------------------------------------------------------


def test_a_malformed_line_fails_with_file_and_line_and_keeps_the_rows_before(model, tmp_path, new_store):
    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "a", "text": "alpha"}, {"_id": "b", "text": "beta"}, "{oops"])
    store = new_store()

    with pytest.raises(BadRowError, match=rf"^{corpus}:3: not valid JSON"):
        index(model, corpus, store)  # in one chunk with the rows before it

    assert store.count() == 2


def test_bad_bytes_skip_exactly_their_rows_and_name_their_lines(kind, model, tmp_path, new_store):
    good = [json.dumps({"_id": f"d{number}", "text": f"document {number}"}).encode() for number in range(1, 200)]
    lines = list(good)
    for number in (3, 100, 150):  # line numbers are 1-based
        lines[number - 1] = b'{"_id": "bad", "text": "caf\xe9 \xff"}'
    corpus = tmp_path / "bytes.jsonl"
    corpus.write_bytes(b"\n".join(lines) + b"\n")

    with open_kind(kind, tmp_path / "store") as store:
        report = index(model, corpus, store, skip_bad_rows=True, chunk_size=64)

        assert (report.embedded, report.bad_rows, report.points, store.count()) == (196, 3, 196, 196)
    offset = sum(len(line) + 1 for line in lines[:99]) + len(b'{"_id": "bad", "text": "caf')
    assert [example.split(": ")[0] for example in report.bad_row_examples] == [
        f"{corpus}:3",
        f"{corpus}:100",
        f"{corpus}:150",
    ]
    assert f"{corpus}:100: not valid UTF-8 at byte {offset} of the file" in report.bad_row_examples[1]
    with pytest.raises(BadRowError, match=rf"^{corpus}:3: not valid UTF-8"):
        index(model, corpus, new_store())


def test_skip_bad_rows_counts_every_kind_of_bad_row(model, tmp_path, new_store):
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

    report = index(model, corpus, new_store(), skip_bad_rows=True)

    assert (report.embedded, report.bad_rows, report.points) == (2, 6, 2)
    assert report.bad_row_examples[0] == f"{corpus}:2: not valid JSON (Expecting value at column 1)"
    assert any(":5: document 'empty' has no text to embed" in example for example in report.bad_row_examples)
    assert report.ok and "6 bad rows skipped" in report.summary()


def test_a_document_that_tokenizes_to_nothing_is_named_or_skipped(model, tiny_dirs, tmp_path, new_store):
    plain = load_model(str(tiny_dirs["qwen3"]), device="cpu", chat_template=False, max_seq_length=SEQ)
    embedded = embed_texts(plain, ["fine", ""], batch_size=8)
    assert embedded.vectors.shape[0] == 1 and list(embedded.tokens > 0) == [True, False]

    class SilentOn(LocalEngine):  # "ghost" tokenizes to nothing, as "" does for a plain-text model
        def embed(self, texts):
            result = super().embed([text for text in texts if "ghost" not in text])
            tokens = iter(result.tokens)
            return type(result)(result.vectors, np.array([0 if "ghost" in t else next(tokens) for t in texts]))

    corpus = write_jsonl(tmp_path / "c.jsonl", [{"_id": "d1", "text": "fine"}, {"_id": "d2", "text": "ghost"}])
    store = new_store()
    with pytest.raises(BadRowError, match=rf"^{corpus}:2: document 'd2' tokenizes to nothing"):
        index(model, corpus, store, engine=SilentOn())
    assert store.count() == 1  # the row before it is kept
    report = index(model, corpus, new_store(), engine=SilentOn(), skip_bad_rows=True)
    assert (report.embedded, report.bad_rows) == (1, 1)


def test_an_empty_corpus_makes_an_empty_store_with_its_provenance(kind, model, tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf8")
    with open_kind(kind, tmp_path / "store") as store:
        report = index(model, tmp_path / "empty.jsonl", store)

        assert (report.rows, report.points) == (0, 0) and report.ok
        assert store.provenance() == model_provenance(model)


# -- duplicates ----------------------------------------------------------------------------------------------------


def duplicated_corpus(tmp_path: Path) -> Path:
    """``a`` three times (rows 1, 4, 7: across chunks of 3), ``b`` twice in one chunk (rows 2, 3)."""
    rows = [("a", "first a"), ("b", "first b"), ("b", "second b"), ("a", "second a"), ("c", "c"), ("d", "d")]
    rows += [("a", "third a"), ("e", "e")]
    return write_jsonl(tmp_path / "dup.jsonl", [{"_id": i, "text": text} for i, text in rows])


def stored_text(store, doc_id: str, model) -> str:
    vector = model.encode_document(["placeholder"], convert_to_numpy=True)[0]
    hits = store.search(vector, limit=store.count())
    [text] = [hit.payload["page_content"] for hit in hits if hit.id == document_point_id(doc_id)]
    return text


@pytest.mark.parametrize(("rule", "kept"), [("first", ("first a", "first b")), ("last", ("third a", "second b"))])
def test_one_duplicate_rule_within_and_across_chunks_and_on_resume(kind, rule, kept, model, tmp_path):
    corpus = duplicated_corpus(tmp_path)
    with open_kind(kind, tmp_path / "store") as store:
        report = index(model, corpus, store, chunk_size=3, on_duplicate=rule)
        resumed = index(model, corpus, store, chunk_size=3, on_duplicate=rule)

        assert (report.embedded, report.duplicates, report.points) == (5, 3, 5)
        assert (resumed.embedded, resumed.skipped_present, resumed.duplicates) == (0, 5, 3)
        assert (stored_text(store, "a", model), stored_text(store, "b", model)) == kept
    assert f"3 rows repeated the id of another row; the {rule} occurrence of each id was indexed" in report.summary()
    assert sorted(set(report.duplicate_ids)) == ["a", "b"]


def test_on_duplicate_error_refuses_before_the_model_loads(tiny_dirs, tmp_path, monkeypatch, capsys):
    import laser_integrations.loading as loading

    corpus = duplicated_corpus(tmp_path)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("loaded the model"))
    with pytest.raises(DuplicateIdError, match=r"^2 ids occur more than once: 'a' \(3 rows, first at .*dup.jsonl:1\)"):
        index_corpus(str(tiny_dirs["qwen3"]), corpus, store=open_kind("local"), on_duplicate="error")
    argv = ["index", str(corpus), "-m", str(tiny_dirs["qwen3"]), "--path", str(tmp_path / "e"), "--no-progress"]
    assert main([*argv, "--on-duplicate", "error"]) == 2
    assert "laser index: error: 2 ids occur more than once" in capsys.readouterr().err


# -- truncation and the payload cap ----------------------------------------------------------------------------------


def test_long_documents_are_counted_as_truncated_and_their_payload_is_capped(model, tmp_path, new_store):
    huge = "word " * 200_000 + "end"  # 1 MB
    rows = [{"_id": "short", "text": "short"}, {"_id": "huge", "text": huge}, {"_id": "long", "text": "word " * 80}]
    corpus = write_jsonl(tmp_path / "long.jsonl", rows)
    store = new_store()

    report = index(model, corpus, store, max_payload_chars=1000)

    assert (report.embedded, report.truncated) == (3, 2)
    assert f"2 documents were longer than {SEQ} tokens" in report.summary()
    payloads = {hit.payload["metadata"]["doc_id"]: hit.payload for hit in store.search(np.ones(64), limit=3)}
    assert payloads["huge"]["page_content"] == huge[:1000]
    assert payloads["huge"]["metadata"]["page_content_chars"] == len(huge)
    assert payloads["short"] == {"page_content": "short", "metadata": {"doc_id": "short", "title": ""}}


# -- write failures: the counts agree with the store ------------------------------------------------------------


def test_a_failed_write_is_retried_then_reported_with_the_ids_that_did_not_land(model, tmp_path, new_store):
    corpus = small_corpus(tmp_path, 40)
    store = new_store()
    calls: list[list[str]] = []
    doomed = document_point_id("booleans-2")  # the 20th row: in the third batch of 8

    def flaky(ids, vectors, payloads):
        calls.append(list(ids))
        if len(calls) == 1 or doomed in ids:  # one transient failure, and one batch that never lands
            raise ConnectionError("the store went away")
        return store.upsert(ids, vectors, payloads)

    report = index(model, corpus, Wrapped(store, upsert=flaky), write_batch_size=8, retry=FAST)

    doomed_batch = next(batch for batch in calls if doomed in batch)
    assert sum(batch == doomed_batch for batch in calls) == FAST.attempts
    assert sorted(report.failed_ids) == sorted(doomed_batch) and report.failed == 8
    assert (report.embedded, report.points, store.count(), report.ok) == (32, 32, 32, False)
    assert "ConnectionError: the store went away" in report.summary()

    healed = index(model, corpus, store)
    assert (healed.embedded, healed.skipped_present, healed.points) == (8, 32, 40)


def test_a_job_stops_when_the_store_keeps_refusing_writes(model, tmp_path, new_store):
    corpus = small_corpus(tmp_path, 40)
    store = new_store()

    def down(*args, **kwargs):
        raise ConnectionError("connection refused")

    report = index(model, corpus, Wrapped(store, upsert=down), chunk_size=5, retry=FAST)

    # chunks 1-3 fail in a row; chunk 4 was embedded meanwhile and is not written; 5-8 are never read
    assert (report.embedded, report.failed, report.points, store.count()) == (0, 20, 0, 0)
    assert report.aborted.startswith("3 chunks in a row could not be written (ConnectionError: connection refused)")
    assert not report.ok and len(report.failed_ids) == 20


def test_after_partial_writes_the_counts_equal_a_fresh_count_of_the_store(model, tmp_path, new_store):
    corpus = small_corpus(tmp_path, 40)
    store = new_store()

    def half_then_full_disk(ids, vectors, payloads):  # a disk that fills up mid-batch, every batch
        half = len(ids) // 2
        store.upsert(ids[:half], vectors[:half], payloads[:half])
        raise OSError(28, "No space left on device")

    report = index(model, corpus, Wrapped(store, upsert=half_then_full_disk), write_batch_size=8, retry=FAST)

    assert (report.embedded, report.failed, report.unsure) == (20, 20, 0)
    assert report.embedded == report.points == store.count()

    fresh = new_store()
    failures: list[str] = []

    def full_disk_then_unreachable(ids, vectors, payloads):
        half = len(ids) // 2
        fresh.upsert(ids[:half], vectors[:half], payloads[:half])
        failures.append("write")
        raise OSError(28, "No space left on device")

    def present(ids):
        if failures:  # the store went away after the first failed write
            raise ConnectionError("gone")
        return fresh.present(ids)

    wrapped = Wrapped(fresh, upsert=full_disk_then_unreachable, present=present)
    unsure = index(model, corpus, wrapped, write_batch_size=8, retry=FAST)

    assert (unsure.embedded, unsure.failed, unsure.unsure, unsure.points) == (0, 0, 40, 20) and not unsure.ok
    assert "40 documents may or may not be stored" in unsure.summary() and "could not be asked" in unsure.summary()


def test_the_job_flushes_the_store_at_intervals(model, tmp_path, monkeypatch):
    from laser_integrations.indexing import job

    monkeypatch.setattr(job, "FLUSH_EVERY_SECONDS", 0.0)
    flushes = []
    with open_kind("edge", tmp_path / "edge") as store:
        counted = Wrapped(store, flush=lambda: flushes.append(store.count()))
        index(model, small_corpus(tmp_path, 12), counted, chunk_size=4)
    assert flushes == [4, 8, 12]


# -- sources ---------------------------------------------------------------------------------------------------


def test_parquet_with_named_fields_and_payload(model, tmp_path, new_store):
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
    store = new_store()

    report = index(model, tmp_path / "c.parquet", store, fields=fields)

    [point] = [hit for hit in store.search(np.ones(64), limit=3) if hit.id == document_point_id("p1")]
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


def test_laser_index_command_on_edge_by_default_and_local_mode_by_name(tiny_dirs, tmp_path, capsys):
    corpus = small_corpus(tmp_path, 12)
    base = ["index", str(corpus), "-m", str(tiny_dirs["qwen3"]), "--max-seq-length", str(SEQ), "--no-progress"]
    edge = [*base, "--path", str(tmp_path / "edge")]

    assert main(edge) == 0
    stderr = capsys.readouterr().err
    assert f"edge:{tmp_path / 'edge'} (local engine): 12 embedded" in stderr
    assert stderr.count("laser index: dtype float32 (default on a CPU") == 1
    assert main(edge) == 0
    assert "0 embedded, 12 already present" in capsys.readouterr().err
    assert main([*edge, "-k", "2"]) == 2
    assert "num_thinking_steps=3" in capsys.readouterr().err

    local = [*base, "--store", "local", "--path", str(tmp_path / "local"), "-c", "docs"]
    assert main(local) == 0
    assert f"qdrant:local:{tmp_path / 'local'}/docs (local engine): 12 embedded" in capsys.readouterr().err
    assert main([*base, "--qdrant-path", str(tmp_path / "local"), "-c", "docs"]) == 0  # the 0.2 spelling
    assert "0 embedded, 12 already present" in capsys.readouterr().err
    assert main([*base, "--path", str(tmp_path / "local")]) == 2  # a local-mode folder is not opened as Edge
    assert "is a qdrant-client local-mode folder: pass --store local" in capsys.readouterr().err

    assert main([*base[:1], str(tmp_path / "nope.jsonl"), *base[2:]]) == 2
    assert "no such file" in capsys.readouterr().err
    write_jsonl(tmp_path / "bad.jsonl", [{"_id": "x", "text": "fine"}, {"_id": "y"}])
    assert main([*base[:1], str(tmp_path / "bad.jsonl"), *base[2:], "--path", str(tmp_path / "other")]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1] == f"laser index: error: {tmp_path / 'bad.jsonl'}:2: no 'text' field (the text to embed; " + (
        "name it with --text-field)"
    )
    assert main([*edge, "--devices", "cpu", "--engine", "local"]) == 2
    assert main([*edge, "-c", "docs"]) == 2
    assert "an Edge folder holds one collection" in capsys.readouterr().err


def test_the_command_exits_1_when_documents_did_not_land(tiny_dirs, tmp_path, monkeypatch, capsys):
    from laser_integrations.indexing import WriteOutcome, job

    corpus = small_corpus(tmp_path, 4)

    def refused(store, ids, *args, **kwargs):
        return WriteOutcome(0, list(ids), [], "ConnectionError: down")

    monkeypatch.setattr(job, "write_points", refused)
    argv = ["index", str(corpus), "-m", str(tiny_dirs["qwen3"]), "--path", str(tmp_path / "q"), "--no-progress"]
    assert main(argv) == 1
    assert "4 failed to write" in capsys.readouterr().err
