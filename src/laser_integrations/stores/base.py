"""Where vectors go: the one contract every store that ``laser index``, the demo and the evaluation write through.

A store holds unit vectors under string point ids (UUIDs, see
:func:`~laser_integrations.indexing.sources.document_point_id`), each with a JSON payload, and records the
:class:`~laser_integrations.provenance.EmbeddingProvenance` of its vectors. Implementations:

- :class:`~laser_integrations.stores.qdrant.QdrantStore`: a collection through ``QdrantClient`` (a server
  URL, embedded local mode on a folder, or ``:memory:``);
- :class:`~laser_integrations.stores.edge.EdgeStore`: a Qdrant Edge shard folder (Qdrant's own engine
  in-process), for an embedded store of millions of points.

Usage, whatever the store::

    store.ensure(provenance)            # create with it, or refuse other settings before any write
    todo = [i for i in ids if i not in store.present(ids)]
    store.upsert(todo, vectors, payloads)
    store.search(query_vector, limit=10)
    store.close()                       # flushes; also a context manager
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from laser_integrations.provenance import EmbeddingProvenance

__all__ = ["Hit", "Store", "StoreLockedError"]


@dataclass(frozen=True)
class Hit:
    """One search result: the point id, its cosine score and its payload."""

    id: str
    score: float
    payload: dict[str, Any] = field(default_factory=dict)


class StoreLockedError(RuntimeError):
    """Another process (or another open store in this one) holds the store's folder."""


@runtime_checkable
class Store(Protocol):
    """What every vector store behind ``laser index``, the demo and the evaluation implements."""

    @property
    def description(self) -> str:
        """Where the vectors live, for messages: ``"edge:/data/shard"``, ``"qdrant:http://host:6333/docs"``."""
        ...

    @property
    def max_points(self) -> int | None:
        """The most points this store can hold and still reopen on this machine (``None``: no known limit)."""
        ...

    def ensure(self, provenance: EmbeddingProvenance, *, adopt: bool = False) -> EmbeddingProvenance:
        """Create the store recording ``provenance``, or open it after checking that it records the same.

        Raises :class:`~laser_integrations.provenance.ProvenanceMismatchError` before any write otherwise
        (``adopt``: record it on a non-empty store that records none).
        """
        ...

    def provenance(self) -> EmbeddingProvenance | None:
        """The recorded provenance (``None`` for a store that does not exist yet or records none)."""
        ...

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored."""
        ...

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Write (or overwrite) points; acknowledged points survive a crash of this process."""
        ...

    def search(self, vector: Sequence[float] | np.ndarray, limit: int = 10) -> list[Hit]:
        """The ``limit`` nearest points by cosine similarity, best first."""
        ...

    def count(self) -> int:
        """How many points are stored (exact)."""
        ...

    def flush(self) -> None:
        """Make every acknowledged write durable in the store's own files (bounds a write-ahead log)."""
        ...

    def close(self) -> None:
        """Flush and release the store (its folder lock, its client); idempotent."""
        ...
