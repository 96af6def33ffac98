"""The Ray engine of ``laser index``: a pool of Ray actors embeds, the job's one writer stores.

The same on a laptop's local Ray and on a cluster (only ``ray.init``'s address differs). Each actor loads
the model once (a spec on its own device, or a model object fetched from Ray's object store) and runs
:func:`~laser_integrations.indexing.engines.embed_texts`, the call every engine runs. A chunk is split
across the actors; the vectors come back to the calling process, which is the only one that writes:
a Qdrant Edge folder or qdrant-client's local mode admit one process, and one writer keeps resume,
duplicates and the counts in one place (:func:`~laser_integrations.indexing.job.index_corpus`).

An actor that dies is restarted by Ray and its task retried (``max_restarts=-1``, ``max_task_retries=-1``):
a slice of a chunk is embedded again, never written twice.

Example:
    ```python
    from laser_integrations.indexing import RayEngine, index_corpus
    from laser_integrations.stores import open_store

    engine = RayEngine(address="auto", concurrency=8, num_gpus=1)
    with open_store("server", url="http://qdrant:6333", collection="docs") as store:
        report = index_corpus("laser-qwen3", "corpus/", store=store, engine=engine)
    ```
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import ray
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Ray engine needs Ray: pip install 'laser-integrations[ray]'") from error

from laser_integrations.indexing.engines import Embedded, embed_texts, load
from laser_integrations.provenance import EmbeddingProvenance, model_provenance
from laser_integrations.validation import positive_int

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["RayEmbedder", "RayEngine"]


@dataclass
class RayEngine:
    """Ray actors over a local Ray or a cluster.

    Args:
        address: ``ray.init(address=...)``: ``"auto"`` or ``"ray://head:10001"`` for a cluster; ``None`` joins the
            Ray already initialized in this process, or starts a local one. A Ray started here is shut down after.
        concurrency: Embedding actors (one model each); each chunk is split across them.
        num_gpus: GPUs per actor (``1``: one model per GPU; ``0``: CPU actors).
        num_cpus: CPUs per actor (default 1); CPU actors use as many torch threads.
        ray_remote_args: More options for the actors (``resources``, ``runtime_env`` ...).
    """

    address: str | None = None
    concurrency: int = 1
    num_gpus: float = 0
    num_cpus: float | None = None
    ray_remote_args: dict[str, Any] = field(default_factory=dict)
    name: str = field(default="ray", init=False)

    def __post_init__(self) -> None:
        positive_int("concurrency", self.concurrency)
        if self.num_gpus < 0 or (self.num_cpus is not None and self.num_cpus <= 0):
            raise ValueError(f"num_gpus must be >= 0 and num_cpus > 0, got {self.num_gpus!r} and {self.num_cpus!r}")
        self._actors: list[Any] = []
        self._started_ray = False

    def start(
        self, model: Any, *, batch_size: int, load_options: Mapping[str, Any] | None = None
    ) -> EmbeddingProvenance:
        """Join (or start) Ray; a spec starts the actors now (one of them reports the provenance), a model
        object only on the first chunk with work, so a rerun with nothing new starts none."""
        if not ray.is_initialized():
            ray.init(address=self.address)
            self._started_ray = True
        self._batch_size = batch_size
        self._reference = _ModelReference.of(model, load_options)
        if self._reference.instance is not None:
            return model_provenance(self._reference.instance)
        actors = self._started_actors()
        return EmbeddingProvenance.from_dict(ray.get(actors[0].provenance.remote()))

    def embed(self, texts: Sequence[str]) -> Embedded:
        """Split ``texts`` across the actors, embed, and join the parts in order."""
        if not texts:
            return Embedded(np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64))
        actors = self._started_actors()
        step = -(-len(texts) // len(actors))
        slices = [list(texts[start : start + step]) for start in range(0, len(texts), step)]
        calls = [actor.embed.remote(part) for actor, part in zip(actors, slices, strict=False)]  # <= one each
        parts: list[Embedded] = ray.get(calls)
        return Embedded(np.concatenate([part.vectors for part in parts]), np.concatenate([p.tokens for p in parts]))

    def close(self) -> None:
        for actor in self._actors:
            ray.kill(actor)
        self._actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def _started_actors(self) -> list[Any]:
        if not self._actors:
            embedder = RayEmbedder  # looked up at call time: a subclass patched in here is what the actors run
            actor_class = ray.remote(embedder).options(
                num_gpus=self.num_gpus or None,
                num_cpus=self.num_cpus if self.num_cpus is not None else 1,
                max_restarts=-1,
                max_task_retries=-1,
                **self.ray_remote_args,
            )
            reference = self._reference.shipped()
            use_gpu = self.num_gpus > 0
            self._actors = [
                actor_class.remote(reference, self._batch_size, self.num_cpus, use_gpu)
                for _ in range(self.concurrency)
            ]
        return self._actors


class RayEmbedder:
    """The Ray actor: one model, :func:`~laser_integrations.indexing.engines.embed_texts` per slice of a chunk."""

    def __init__(self, model: _ModelReference, batch_size: int, num_cpus: float | None, use_gpu: bool) -> None:
        if not use_gpu:
            import torch

            torch.set_num_threads(max(1, int(num_cpus or 1)))
        self.model = model.load(use_gpu)
        self.batch_size = batch_size

    def provenance(self) -> dict[str, Any]:
        return model_provenance(self.model).to_dict()

    def embed(self, texts: list[str]) -> Embedded:
        return embed_texts(self.model, texts, batch_size=self.batch_size)


@dataclass(frozen=True)
class _ModelReference:
    """How an actor gets the model: load a spec (with options), or fetch a model object from the object store."""

    spec: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    instance_ref: Any = None
    instance: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, model: Any, options: Mapping[str, Any] | None) -> _ModelReference:
        options = {key: value for key, value in (options or {}).items() if value is not None}
        if isinstance(model, (str, os.PathLike)):
            return cls(spec=os.fspath(model), options=options)
        return cls(instance=load(model, options))

    def shipped(self) -> _ModelReference:
        """Ready for the actors: a model object goes to the object store once (a spec travels as it is)."""
        if self.instance is None or self.instance_ref is not None:
            return self
        return _ModelReference(instance_ref=ray.put(self.instance), instance=self.instance)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "options": dict(self.options), "instance_ref": self.instance_ref, "instance": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def load(self, use_gpu: bool) -> SentenceTransformer:
        if self.spec is not None:
            options = dict(self.options)
            options.setdefault("device", "cuda" if use_gpu else "cpu")
            return load(self.spec, options)
        return ray.get(self.instance_ref).to("cuda" if use_gpu else "cpu")
