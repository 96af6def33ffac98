"""The Ray engine of ``laser index`` on a local 2-CPU Ray: the code path a cluster runs, only ``ray.init`` and the
client differ. Embedded Qdrant (the driver writes), a "server" (workers write through the Datasink), an actor
killed mid-job, and a bad row reported with its file and line from inside a Ray task."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

from laser_integrations.evaluation.beir import load_beir  # noqa: E402
from laser_integrations.indexing import BadRowError, index_corpus, ray_engine  # noqa: E402
from laser_integrations.indexing.ray_engine import RayEmbedder, RayEngine  # noqa: E402
from laser_integrations.qdrant import connect  # noqa: E402
from test_indexing import (  # noqa: E402
    PYREF,
    SEQ,
    assert_matches,
    expected_vectors,
    small_corpus,
    stored,
    tiny_indexing_model,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model(tiny_dirs):
    return tiny_indexing_model(tiny_dirs)


@pytest.fixture(scope="module")
def passages():
    return load_beir(PYREF).corpus


@pytest.fixture(scope="module")
def local_ray():
    """A 2-CPU local Ray for this module (what a cluster is, minus the machines)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors below run this module's classes
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    ray.shutdown()


class KilledOnce(RayEmbedder):
    """Kills its own process on its first batch (a marker file says it already did): Ray restarts it."""

    marker: str = ""

    def __call__(self, batch):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()), encoding="utf8")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().__call__(batch)


def test_ray_engine_survives_a_killed_actor_and_stores_every_passage_once(
    local_ray, tiny_dirs, model, passages, tmp_path, monkeypatch
):
    marker = tmp_path / "killed"
    crashing = type("KilledOnceHere", (KilledOnce,), {"marker": str(marker)})
    monkeypatch.setattr(ray_engine, "RayEmbedder", crashing)
    engine = RayEngine(concurrency=2, num_cpus=0.5)
    options = {"device": "cpu", "max_seq_length": SEQ}
    path = tmp_path / "qdrant"

    # the model as a spec: each actor loads it, as on a cluster
    first = index_corpus(
        str(tiny_dirs["qwen3"]), PYREF, collection="docs", path=path, engine=engine, chunk_size=64,
        load_options=options, show_progress_bar=False,
    )  # fmt: skip
    monkeypatch.setattr(ray_engine, "RayEmbedder", RayEmbedder)
    again = index_corpus(
        str(tiny_dirs["qwen3"]), PYREF, collection="docs", path=path, engine=engine, load_options=options,
        show_progress_bar=False,
    )  # fmt: skip

    assert marker.exists(), "the actor was not killed"
    assert (first.engine, first.embedded, first.skipped_present, first.failed, first.points) == ("ray", 275, 0, 0, 275)
    assert (again.embedded, again.skipped_present, again.points) == (0, 275, 275)
    client = connect(path)
    try:
        assert_matches(client, expected_vectors(model, passages), passages)
    finally:
        client.close()


class _Store:
    """An in-memory Qdrant inside a Ray actor: stands in for a server that every worker reaches."""

    def __init__(self) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(location=":memory:")

    def call(self, name: str, args: tuple, kwargs: dict) -> Any:
        return getattr(self.client, name)(*args, **kwargs)


class ServerClient:
    """A picklable client that forwards every call to the store actor, as a remote client does to a server."""

    init_options = {"url": "http://qdrant-in-an-actor:6333"}

    def __init__(self, store: Any) -> None:
        self.store = store

    def __call__(self) -> ServerClient:  # the workers' client factory
        return self

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return lambda *args, **kwargs: ray.get(self.store.call.remote(name, args, kwargs))


def test_with_a_server_the_workers_write_through_the_datasink(local_ray, model, tmp_path, monkeypatch):
    corpus = small_corpus(tmp_path, 48)
    server = ServerClient(ray.remote(_Store).remote())
    writes = []
    monkeypatch.setattr(ray_engine.QdrantDatasink, "on_write_complete", _recording(writes))
    engine = RayEngine(concurrency=1, num_cpus=0.5, worker_client=server)

    # a model object: shipped to the actors through the object store
    report = index_corpus(
        model, corpus, collection="docs", client=server, engine=engine, chunk_size=16, show_progress_bar=False
    )

    assert writes, "the workers did not write through the Datasink"
    assert (report.embedded, report.skipped_present, report.points) == (48, 0, 48)
    vectors = model.encode_document([d.text for d in _documents(corpus)], convert_to_numpy=True)
    points = stored(server)
    for document, vector in zip(_documents(corpus), vectors, strict=True):
        assert float(points[document.doc_id][2] @ vector) >= 0.99999


def test_a_bad_row_read_inside_ray_is_reported_with_its_file_and_line(local_ray, model, tmp_path):
    corpus = small_corpus(tmp_path, 40)
    with corpus.open("a", encoding="utf8") as handle:
        handle.write('{"_id": "broken", "text": 12}\n')
    engine = RayEngine(concurrency=1, num_cpus=0.5)

    with pytest.raises(BadRowError, match=rf"^{corpus}:41: 'text' must be a string, got int$") as raised:
        index_corpus(
            model, corpus, collection="docs", client=connect(), engine=engine, chunk_size=16, show_progress_bar=False
        )

    assert isinstance(raised.value.__context__, ray.exceptions.RayError)  # raised in a Ray task, unwrapped


def test_without_ray_the_engine_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "laser_integrations.indexing.ray_engine")
    with pytest.raises(ImportError, match=r"pip install 'laser-integrations\[ray\]'"):
        importlib.import_module("laser_integrations.indexing.ray_engine")


def _recording(calls: list):
    original = ray_engine.QdrantDatasink.on_write_complete

    def on_write_complete(self, write_result):
        calls.append(write_result)
        return original(self, write_result)

    return on_write_complete


def _documents(corpus):
    from laser_integrations.indexing import documents, open_source

    return list(documents(open_source(corpus)))
