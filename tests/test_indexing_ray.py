"""The Ray engine of ``laser index`` on a local 2-CPU Ray: the code path a cluster runs (only ``ray.init``
differs). Ray actors embed, the job writes through one writer, on both embedded stores; an actor killed
mid-job is restarted and its slice embedded again."""

from __future__ import annotations

import importlib
import os
import signal
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from laser_integrations.evaluation.beir import load_beir  # noqa: E402
from laser_integrations.indexing import index_corpus, ray_engine  # noqa: E402
from laser_integrations.indexing.ray_engine import RayEmbedder, RayEngine  # noqa: E402
from laser_integrations.provenance import model_provenance  # noqa: E402
from test_indexing import (  # noqa: E402
    PYREF,
    SEQ,
    STORES,
    assert_matches,
    expected_vectors,
    open_kind,
    small_corpus,
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
    """Kills its own process on its first slice (a marker file says it already did): Ray restarts it."""

    marker: str = ""

    def embed(self, texts):
        if not os.path.exists(self.marker):
            Path(self.marker).write_text(str(os.getpid()), encoding="utf8")
            os.kill(os.getpid(), signal.SIGKILL)
        return super().embed(texts)


@pytest.mark.parametrize("kind", STORES)
def test_ray_engine_survives_a_killed_actor_and_stores_every_passage_once(
    kind, local_ray, tiny_dirs, model, passages, tmp_path, monkeypatch
):
    marker = tmp_path / "killed"
    monkeypatch.setattr(ray_engine, "RayEmbedder", type("KilledOnceHere", (KilledOnce,), {"marker": str(marker)}))
    options = {"device": "cpu", "max_seq_length": SEQ}

    with open_kind(kind, tmp_path / "store") as store:
        # the model as a spec: each actor loads it, as on a cluster
        first = index_corpus(
            str(tiny_dirs["qwen3"]), PYREF, store=store, engine=RayEngine(concurrency=2, num_cpus=0.5),
            chunk_size=64, load_options=options, show_progress_bar=False,
        )  # fmt: skip
        monkeypatch.setattr(ray_engine, "RayEmbedder", RayEmbedder)
        again = index_corpus(
            str(tiny_dirs["qwen3"]), PYREF, store=store, engine=RayEngine(concurrency=2, num_cpus=0.5),
            load_options=options, show_progress_bar=False,
        )  # fmt: skip

        assert marker.exists(), "the actor was not killed"
        assert (first.engine, first.embedded, first.skipped_present, first.failed, first.points) == (
            "ray", 275, 0, 0, 275,
        )  # fmt: skip
        assert (again.embedded, again.skipped_present, again.points) == (0, 275, 275)
        assert_matches(store, expected_vectors(model, passages), passages)
        assert store.provenance() == model_provenance(model)


def test_a_model_object_is_shipped_to_the_actors_and_a_rerun_starts_none(local_ray, model, tmp_path):
    corpus = small_corpus(tmp_path, 48)
    store = open_kind("local")
    engine = RayEngine(concurrency=2, num_cpus=0.5)

    report = index_corpus(model, corpus, store=store, engine=engine, chunk_size=16, show_progress_bar=False)
    rerun_engine = RayEngine(concurrency=2, num_cpus=0.5)
    again = index_corpus(model, corpus, store=store, engine=rerun_engine, chunk_size=16, show_progress_bar=False)

    assert (report.embedded, report.skipped_present, report.points) == (48, 0, 48)
    assert (again.embedded, again.skipped_present) == (0, 48)
    assert rerun_engine._actors == [], "a rerun with nothing to embed must not start the actors"
    lines = corpus.read_text(encoding="utf8").splitlines()
    for vector in model.encode_document([_text(line) for line in lines], convert_to_numpy=True):
        assert store.search(vector, limit=1)[0].score >= 0.99999


def test_without_ray_the_engine_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.delitem(sys.modules, "laser_integrations.indexing.ray_engine")
    with pytest.raises(ImportError, match=r"pip install 'laser-integrations\[ray\]'"):
        importlib.import_module("laser_integrations.indexing.ray_engine")


def _text(line: str) -> str:
    import json

    from laser_integrations.formatting import passage_text

    row = json.loads(line)
    return passage_text(row["text"], row.get("title") or "")
