"""The store seam: one contract over Qdrant Edge, local mode and :memory:, and the local-mode capacity fence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from laser_integrations.provenance import EmbeddingProvenance, ProvenanceMismatchError
from laser_integrations.stores import (
    EdgeStore,
    QdrantStore,
    Store,
    StoreCapacityError,
    StoreLockedError,
    check_capacity,
    open_store,
)
from laser_integrations.stores.capacity import LOCAL_MODE_WARN_POINTS, local_mode_max_points
from laser_integrations.stores.edge_index import index_record

PROVENANCE = EmbeddingProvenance("smollm2", 3, "Instruct: t\nQuery: ", 8, "plain", max_seq_length=128)
SRC = str(Path(__file__).parents[1] / "src")


def point_ids(count: int, start: int = 0) -> list[str]:
    return [str(uuid.UUID(int=start + index + 1)) for index in range(count)]


def unit_vectors(count: int, dimension: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def brute_force_top(vectors: np.ndarray, query: np.ndarray, limit: int) -> list[int]:
    return [int(i) for i in np.argsort(-(vectors @ query), kind="stable")[:limit]]


@pytest.fixture(params=["edge", "local", "memory"])
def kind(request):
    return request.param


def open_kind(kind: str, folder: Path) -> Store:
    if kind == "memory":
        return open_store("local")
    return open_store(kind, path=folder / kind)


def test_every_store_keeps_the_contract(kind, tmp_path):
    store = open_kind(kind, tmp_path)
    assert isinstance(store, Store)
    assert store.provenance() is None and store.count() == 0
    assert store.ensure(PROVENANCE) == PROVENANCE
    assert store.provenance() == PROVENANCE
    ids, vectors = point_ids(50), unit_vectors(50, 8)
    payloads = [{"text": f"doc {i}", "metadata": {"n": i, "tags": ["a", None], "score": 0.5}} for i in range(50)]
    assert store.present(ids) == set()
    store.upsert(ids[:30], vectors[:30], payloads[:30])
    assert store.present(ids) == set(ids[:30])
    store.upsert(ids, vectors, payloads)  # overwrites, never duplicates
    assert store.count() == 50

    hits = store.search(vectors[7], limit=10)
    assert [hit.id for hit in hits] == [ids[i] for i in brute_force_top(vectors, vectors[7], 10)]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[0].payload == payloads[7]
    store.close()
    store.close()  # idempotent


@pytest.mark.parametrize("kind", ["edge", "local"])
def test_a_reopened_store_holds_its_points_and_refuses_other_settings_before_any_write(kind, tmp_path):
    with open_kind(kind, tmp_path) as store:
        store.ensure(PROVENANCE)
        store.upsert(point_ids(5), unit_vectors(5, 8), [{"text": "x"}] * 5)
    with open_kind(kind, tmp_path) as store:
        assert store.count() == 5 and store.provenance() == PROVENANCE
        with pytest.raises(ProvenanceMismatchError, match="num_thinking_steps=3; these embeddings use"):
            store.ensure(EmbeddingProvenance("smollm2", 6, PROVENANCE.query_prompt, 8, "plain"))
        assert store.provenance() == PROVENANCE and store.count() == 5
        assert store.ensure(PROVENANCE) == PROVENANCE


def test_edge_refuses_a_mismatch_before_creating_anything_and_unrecorded_points_unless_adopted(tmp_path):
    with EdgeStore(tmp_path / "shard", dimension=8) as store:
        store.upsert(point_ids(3), unit_vectors(3, 8), [{}] * 3)
    before = json.dumps(sorted(p.name for p in (tmp_path / "shard").iterdir()))
    with EdgeStore(tmp_path / "shard") as store:
        with pytest.raises(ProvenanceMismatchError, match="holds 8-dimensional vectors; these embeddings are 16"):
            store.ensure(EmbeddingProvenance("smollm2", 3, "", 16, "plain"))
        with pytest.raises(ProvenanceMismatchError, match="records no embedding provenance"):
            store.ensure(PROVENANCE)
        assert json.dumps(sorted(p.name for p in (tmp_path / "shard").iterdir())) == before
        assert store.ensure(PROVENANCE, adopt=True) == PROVENANCE
    with EdgeStore(tmp_path / "shard") as store:
        assert store.provenance() == PROVENANCE


def test_thirty_thousand_points_through_edge_reopen_and_match_numpy_brute_force(tmp_path):
    count, dimension = 30_000, 64
    ids, vectors = point_ids(count), unit_vectors(count, dimension, seed=1)
    with EdgeStore(tmp_path / "shard", flush_every=10_000) as store:
        store.ensure(EmbeddingProvenance("m", 3, "", dimension, "plain"))
        for start in range(0, count, 2_000):
            batch = slice(start, start + 2_000)
            store.upsert(ids[batch], vectors[batch], [{"row": i} for i in range(start, min(count, start + 2_000))])
    queries = unit_vectors(20, dimension, seed=2)
    with EdgeStore(tmp_path / "shard") as store:
        assert store.count() == count
        assert store.present(ids[::997]) == set(ids[::997])
        for query in queries:
            hits = store.search(query, limit=10)
            assert [hit.id for hit in hits] == [ids[i] for i in brute_force_top(vectors, query, 10)]
            assert [hit.payload["row"] for hit in hits] == brute_force_top(vectors, query, 10)


def run_python(code: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True, **kwargs)


def test_a_second_process_opening_an_edge_folder_is_refused_at_once(tmp_path):
    with EdgeStore(tmp_path / "shard") as store:
        store.ensure(PROVENANCE)
        with pytest.raises(StoreLockedError, match="open in another process"):
            EdgeStore(tmp_path / "shard")  # a second open in this process too
        other = run_python(
            f"""
            from laser_integrations.stores import open_store, StoreLockedError
            try:
                open_store("edge", path={str(tmp_path / "shard")!r})
            except StoreLockedError as error:
                print(error)
            """,
            stdout=subprocess.PIPE,
        )
        out, _ = other.communicate(timeout=60)
        assert f"is open in another process (pid {os.getpid()})" in out
    with EdgeStore(tmp_path / "shard") as store:  # released on close
        assert store.provenance() == PROVENANCE


def test_sigkill_of_an_edge_writer_loses_no_acknowledged_point(tmp_path):
    writer = run_python(
        f"""
        import uuid, sys, numpy as np
        from laser_integrations.stores import EdgeStore
        from laser_integrations.provenance import EmbeddingProvenance
        store = EdgeStore({str(tmp_path / "shard")!r}, flush_every=700)
        store.ensure(EmbeddingProvenance("m", 3, "", 16, "plain"))
        for batch in range(10_000):
            ids = [str(uuid.UUID(int=batch * 100 + i + 1)) for i in range(100)]
            store.upsert(ids, np.random.default_rng(batch).standard_normal((100, 16)), [{{"b": batch}}] * 100)
            print(batch, flush=True)
        """,
        stdout=subprocess.PIPE,
    )
    acknowledged = -1
    for line in writer.stdout:
        acknowledged = int(line)
        if acknowledged >= 25:
            break
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    with EdgeStore(tmp_path / "shard") as store:
        ids = point_ids((acknowledged + 1) * 100)
        assert store.present(ids) == set(ids)
        assert store.count() >= len(ids)


def test_local_mode_is_fenced_before_embedding_with_the_ways_out_named(tmp_path):
    with open_store("local", path=tmp_path / "local") as local:
        limit = local.max_points
        assert limit == local_mode_max_points(1024)
        local.ensure(PROVENANCE)
        assert local.max_points == local_mode_max_points(8) > limit  # scaled by the recorded dimension
        assert check_capacity(local, LOCAL_MODE_WARN_POINTS) is None
        warning = check_capacity(local, LOCAL_MODE_WARN_POINTS + 1)
        assert "20,001 points" in warning and "--store edge" in warning and "6.5 GB" in warning
        with pytest.raises(StoreCapacityError) as refused:
            check_capacity(local, local.max_points + 1)
    message = str(refused.value)
    assert "\n" not in message and "--store edge" in message and "--qdrant-url" in message
    assert "300,000 points did not reopen within 12 GiB" in message


def test_only_local_mode_is_fenced():
    from qdrant_client import QdrantClient

    never_contacted = QdrantClient(url="http://127.0.0.1:1", check_compatibility=False)
    server = QdrantStore(never_contacted, "docs", owns_client=True)
    assert server.max_points is None and server.description == "qdrant:http://127.0.0.1:1/docs"
    assert check_capacity(server, 10**9) is None
    with open_store("local") as memory:
        assert memory.max_points is None and "20,001" in check_capacity(memory, 20_001)
    server.close()


def test_edge_is_not_fenced(tmp_path):
    with open_store("edge", path=tmp_path / "shard") as store:
        assert store.max_points is None and check_capacity(store, 10**9) is None


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        ("edge", {}, "needs a folder"),
        ("edge", {"path": "x", "url": "http://h"}, "takes no url="),
        ("server", {}, "--qdrant-url"),
        ("chroma", {}, "choose one of edge, local, server"),
    ],
)
def test_open_store_names_what_is_wrong(kind, kwargs, message):
    with pytest.raises(ValueError, match=message):
        open_store(kind, **kwargs)


def test_local_mode_and_edge_refuse_each_others_folders(tmp_path):
    with open_store("edge", path=tmp_path / "shard") as store:
        store.ensure(PROVENANCE)
    with pytest.raises(ValueError, match="is a Qdrant Edge folder; open it with the edge store"):
        open_store("local", path=tmp_path / "shard")
    with open_store("local", path=tmp_path / "local") as store:
        store.ensure(PROVENANCE)
    before = sorted(path.name for path in (tmp_path / "local").iterdir())
    with pytest.raises(ValueError, match="is a qdrant-client local-mode folder; open it with --store local"):
        open_store("edge", path=tmp_path / "local")
    assert sorted(path.name for path in (tmp_path / "local").iterdir()) == before


def test_ids_must_be_uuids(tmp_path):
    with open_store("edge", path=tmp_path / "shard") as store:
        store.ensure(PROVENANCE)
        with pytest.raises(ValueError, match="not a UUID string; derive one"):
            store.upsert(["doc-1"], unit_vectors(1, 8), [{}])


def test_an_edge_snapshot_restores_into_a_new_folder_with_its_points_and_provenance(tmp_path):
    import tarfile

    from laser_integrations.stores.edge_snapshot import restore_snapshot, write_snapshot

    ids, vectors = point_ids(400), unit_vectors(400, 8)
    with EdgeStore(tmp_path / "source") as store:
        store.ensure(PROVENANCE)
        store.upsert(ids, vectors, [{"text": f"doc {i}"} for i in range(400)])
        snapshot = write_snapshot(store, tmp_path / "docs.snapshot")
    names = tarfile.open(snapshot).getnames()
    assert "wal" in names and any(n.startswith("segments/") and n.endswith(".tar") for n in names)
    with restore_snapshot(snapshot, tmp_path / "copy") as copy:
        assert copy.count() == 400 and copy.provenance() == PROVENANCE
        nearest = [ids[i] for i in brute_force_top(vectors, vectors[9], 10)]
        assert [hit.id for hit in copy.search(vectors[9])] == nearest
        assert copy.search(vectors[9], limit=1)[0].payload == {"text": "doc 9"}
    with pytest.raises(ValueError, match="is not empty"):
        restore_snapshot(snapshot, tmp_path / "copy")


@pytest.mark.parametrize(("kind", "options"), [("hnsw", {"hnsw_ef": 256}), ("int8", {})])
def test_a_search_index_is_opt_in_recorded_in_the_folder_and_close_to_exact(kind, options, tmp_path):
    ids, vectors = point_ids(3_000), unit_vectors(3_000, 32, seed=3)
    samples = range(0, 3_000, 150)
    exact = [{ids[j] for j in brute_force_top(vectors, vectors[i], 10)} for i in samples]
    with EdgeStore(tmp_path / "shard") as store:
        store.ensure(EmbeddingProvenance("m", 3, "", 32, "plain"))
        store.upsert(ids, vectors, [{}] * 3_000)
        assert store.index is None
        store.build_index(kind, **options)
        assert store.index["kind"] == kind
        assert store.present(ids[:3]) == set(ids[:3])  # the folder is this process's again
    with EdgeStore(tmp_path / "shard") as store:
        assert store.index == index_record(kind, **options)
        found = [{hit.id for hit in store.search(vectors[i])} for i in samples]
        assert np.mean([len(f & e) / 10 for f, e in zip(found, exact, strict=True)]) >= 0.95
        assert store.count() == 3_000
    with EdgeStore(tmp_path / "shard", exact=True) as store:
        assert [{hit.id for hit in store.search(vectors[i])} for i in samples] == exact


async def test_a_search_index_builds_off_the_event_loop(tmp_path):
    import asyncio

    with EdgeStore(tmp_path / "shard") as store:
        store.ensure(EmbeddingProvenance("m", 3, "", 32, "plain"))
        store.upsert(point_ids(2_000), unit_vectors(2_000, 32), [{}] * 2_000)
        ticks = 0

        async def tick():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        await store.abuild_index()
        ticker.cancel()
        assert ticks >= 5  # the loop ran while the graph was built
        assert store.search(unit_vectors(2_000, 32)[7], limit=1)[0].id == point_ids(2_000)[7]
