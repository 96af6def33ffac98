"""Searchers: where the evaluation runner finds each query vector's best documents.

A searcher has one method, ``search(vectors, top_k) -> [{doc_id: score}, ...]``. ``laser eval`` uses
:class:`ExactSearch` (in memory), ``laser demo`` :class:`QdrantSearch` (a collection), through the same
runner (:func:`~laser_integrations.evaluation.runner.run_modes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    from qdrant_client import QdrantClient

__all__ = ["ExactSearch", "QdrantSearch", "Searcher"]


class Searcher(Protocol):
    """Finds the ``top_k`` best documents for each query vector: ``[{doc_id: score}, ...]``."""

    def search(self, vectors: np.ndarray, top_k: int) -> list[dict[str, float]]: ...


class ExactSearch:
    """Exact inner-product search over normalized document vectors (cosine), in memory.

    Example:
        >>> import numpy as np
        >>> search = ExactSearch(["a", "b"], np.array([[1.0, 0.0], [0.0, 1.0]]))
        >>> search.search(np.array([[0.5, 0.75]]), top_k=1)
        [{'b': 0.75}]
    """

    def __init__(self, doc_ids: Sequence[str], vectors: np.ndarray) -> None:
        import numpy as np

        if len(doc_ids) != len(vectors):
            raise ValueError(f"{len(doc_ids)} document ids but {len(vectors)} vectors")
        self.doc_ids = list(doc_ids)
        self.vectors = np.asarray(vectors, dtype=np.float32)

    def search(self, vectors: np.ndarray, top_k: int) -> list[dict[str, float]]:
        import numpy as np

        scores = np.asarray(vectors, dtype=np.float32) @ self.vectors.T
        k = min(top_k, scores.shape[1])
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        results = []
        for row, candidates in zip(scores, top, strict=True):
            ranked = candidates[np.argsort(-row[candidates], kind="stable")]
            results.append({self.doc_ids[index]: float(row[index]) for index in ranked})
        return results


class QdrantSearch:
    """The runner's searcher over a Qdrant collection: one batched ``query_batch_points`` per query batch."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection

    def search(self, vectors: np.ndarray, top_k: int) -> list[dict[str, float]]:
        from qdrant_client import models

        requests = [
            models.QueryRequest(query=vector.tolist(), limit=top_k, with_payload=["metadata"]) for vector in vectors
        ]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [
            {point.payload["metadata"]["doc_id"]: point.score for point in response.points} for response in responses
        ]
