"""Searchers: where the evaluation runner finds each query vector's best documents.

A searcher has one method, ``search(vectors, top_k) -> [{doc_id: score}, ...]``. ``laser eval`` uses
:class:`ExactSearch` (in memory), ``laser demo`` :class:`StoreSearch` (a store), through the same
runner (:func:`~laser_integrations.evaluation.runner.run_modes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np

    from laser_integrations.stores import Store

__all__ = ["ExactSearch", "Searcher", "StoreSearch"]


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


class StoreSearch:
    """The runner's searcher over a :class:`~laser_integrations.stores.base.Store` (Edge, a Qdrant collection).

    Results are keyed by the ``metadata.doc_id`` that ``laser index`` stores in each payload.

    Example:
        >>> import numpy as np
        >>> from laser_integrations.provenance import EmbeddingProvenance
        >>> from laser_integrations.stores import open_store
        >>> store = open_store("local")                                     # in memory
        >>> _ = store.ensure(EmbeddingProvenance("m", 1, "", 2, "plain"))
        >>> ids = ["00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000002"]
        >>> payloads = [{"metadata": {"doc_id": "a"}}, {"metadata": {"doc_id": "b"}}]
        >>> store.upsert(ids, np.array([[1.0, 0.0], [0.0, 1.0]]), payloads)
        >>> StoreSearch(store).search(np.array([[0.0, 1.0]]), top_k=1)
        [{'b': 1.0}]
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def search(self, vectors: np.ndarray, top_k: int) -> list[dict[str, float]]:
        return [
            {hit.payload["metadata"]["doc_id"]: hit.score for hit in self.store.search(vector, limit=top_k)}
            for vector in vectors
        ]
