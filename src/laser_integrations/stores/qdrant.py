"""A :class:`~laser_integrations.stores.base.Store` over one collection of a ``QdrantClient``.

Covers a Qdrant server or cluster (``url``), embedded local mode on a folder, and ``:memory:``. The
provenance record and its checks are :func:`laser_integrations.qdrant.ensure_collection`'s, so a collection
written here opens in LangChain's and LlamaIndex's Qdrant stores and the other way round.

Example:
    >>> from qdrant_client import QdrantClient
    >>> from laser_integrations.provenance import EmbeddingProvenance
    >>> store = QdrantStore(QdrantClient(":memory:"), "docs", owns_client=True)
    >>> store.ensure(EmbeddingProvenance("smollm2", 3, "", 2, "plain")).dimension
    2
    >>> ids = ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"]
    >>> store.upsert(ids, np.array([[1.0, 0.0], [0.0, 1.0]]), [{"text": "a"}, {"text": "b"}])
    >>> store.search([0.9, 0.1], limit=1)[0].payload
    {'text': 'a'}
    >>> store.present([ids[0], "00000000-0000-0000-0000-0000000000ff"]) == {ids[0]}
    True
    >>> store.close()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from laser_integrations.provenance import EmbeddingProvenance
from laser_integrations.qdrant import ensure_collection, stored_provenance
from laser_integrations.stores.base import Hit
from laser_integrations.stores.capacity import (
    LOCAL_MODE_REOPEN_DIMENSION,
    LOCAL_MODE_WARN_POINTS,
    local_mode_max_points,
)
from laser_integrations.stores.points import canonical_id, point_matrix

__all__ = ["QdrantStore"]


class QdrantStore:
    """The collection ``collection`` of ``client``: a server, local mode on a folder, or ``:memory:``.

    Args:
        client: The ``QdrantClient``.
        collection: The collection's name (created by :meth:`ensure`).
        owns_client: Close ``client`` in :meth:`close` (a client opened for this store alone).
        distance: The vector distance; cosine, what both frameworks' Qdrant stores use.
    """

    def __init__(
        self,
        client: QdrantClient,
        collection: str,
        *,
        owns_client: bool = False,
        distance: models.Distance = models.Distance.COSINE,
    ) -> None:
        self._client = client
        self._collection = collection
        self._owns_client = owns_client
        self._distance = distance
        self._dimension: int | None = None
        self._closed = False
        local = getattr(client, "_client", None)
        self._location: str | None = getattr(local, "location", None)  # None for a server
        self._persistent = bool(getattr(local, "persistent", False))
        self._where = getattr(local, "rest_uri", None) or f"local:{self._location}"

    @property
    def client(self) -> QdrantClient:
        """The ``QdrantClient`` (for the frameworks' own Qdrant stores over the same collection)."""
        return self._client

    @property
    def collection(self) -> str:
        """The collection's name."""
        return self._collection

    @property
    def description(self) -> str:
        """``"qdrant:http://host:6333/docs"``, ``"qdrant:local:/data/docs"`` or ``"qdrant:local::memory:/docs"``."""
        return f"qdrant:{self._where}/{self._collection}"

    @property
    def is_local(self) -> bool:
        """Whether this is qdrant-client's embedded local mode (a folder or ``:memory:``), not a server."""
        return self._location is not None

    @property
    def warn_points(self) -> int | None:
        """Above this many points :func:`~laser_integrations.stores.capacity.check_capacity` warns (local mode)."""
        return LOCAL_MODE_WARN_POINTS if self.is_local else None

    @property
    def max_points(self) -> int | None:
        """For local mode on a folder, the most points it can reopen on this machine's RAM; else ``None``.

        Scaled by the collection's vector dimension (1024, LaSER-Qwen3-0.6B's, until it is known).
        """
        if not self._persistent:
            return None
        return local_mode_max_points(self._known_dimension() or LOCAL_MODE_REOPEN_DIMENSION)

    def ensure(self, provenance: EmbeddingProvenance, *, adopt: bool = False) -> EmbeddingProvenance:
        """Create the collection recording ``provenance`` or check the one there; see ``ensure_collection``."""
        recorded = ensure_collection(self._client, self._collection, provenance, distance=self._distance, adopt=adopt)
        self._dimension = recorded.dimension
        return recorded

    def provenance(self) -> EmbeddingProvenance | None:
        """The provenance the collection records (``None`` if it does not exist or records none)."""
        if not self._client.collection_exists(self._collection):
            return None
        return stored_provenance(self._client, self._collection)

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` the collection holds."""
        if not ids or not self._client.collection_exists(self._collection):
            return set()
        found = self._client.retrieve(self._collection, list(ids), with_payload=False, with_vectors=False)
        stored = {str(record.id) for record in found}
        return {point_id for point_id in ids if canonical_id(point_id) in stored}

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Write the points and wait until the collection acknowledges them."""
        if not len(ids):
            return
        matrix = point_matrix(ids, vectors, payloads)
        batch = models.Batch(ids=list(ids), vectors=matrix.tolist(), payloads=[dict(p) for p in payloads])
        self._client.upsert(self._collection, points=batch, wait=True)

    def search(self, vector: Sequence[float] | np.ndarray, limit: int = 10) -> list[Hit]:
        """The ``limit`` nearest points, best first."""
        query = np.asarray(vector, dtype=np.float32).tolist()
        found = self._client.query_points(self._collection, query=query, limit=limit, with_payload=True).points
        return [Hit(str(point.id), float(point.score), dict(point.payload or {})) for point in found]

    def count(self) -> int:
        """The exact number of points (0 before the collection exists)."""
        if not self._client.collection_exists(self._collection):
            return 0
        return self._client.count(self._collection, exact=True).count

    def flush(self) -> None:
        """Nothing to do: local mode commits every point, a server acknowledges ``wait=True`` writes durably."""

    def close(self) -> None:
        """Close the client if this store owns it; idempotent."""
        if not self._closed and self._owns_client:
            self._client.close()
        self._closed = True

    def __enter__(self) -> QdrantStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"QdrantStore({self.description!r})"

    def _known_dimension(self) -> int | None:
        if self._dimension is None and self._client.collection_exists(self._collection):
            vectors = self._client.get_collection(self._collection).config.params.vectors
            self._dimension = getattr(vectors, "size", None)
        return self._dimension
