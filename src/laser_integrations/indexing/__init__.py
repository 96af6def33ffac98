"""``laser index``: embed a corpus of millions into Qdrant, resumably, on one process, several devices or Ray.

>>> from laser_integrations import load_model                                          # doctest: +SKIP
>>> from laser_integrations.indexing import index_corpus
>>> report = index_corpus(load_model("laser-qwen3"), "corpus.jsonl", collection="docs")  # doctest: +SKIP
>>> print(report.summary())                                                            # doctest: +SKIP

Engines: ``"local"`` (one process), ``"pool"`` (:class:`PoolEngine`, one process per device) and ``"ray"``
(:class:`RayEngine`, Ray Data; needs ``pip install 'laser-integrations[ray]'``, imported only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from laser_integrations.indexing.engines import LocalEngine, PoolEngine
from laser_integrations.indexing.job import DEFAULT_QDRANT_PATH, IndexReport, index_corpus
from laser_integrations.indexing.sources import (
    BadRow,
    BadRowError,
    Document,
    Fields,
    Source,
    document_point_id,
    documents,
    open_source,
)
from laser_integrations.indexing.writer import RetryPolicy, WriteOutcome, stored_ids, write_points

if TYPE_CHECKING:
    from laser_integrations.indexing.ray_engine import RayEngine

__all__ = [
    "DEFAULT_QDRANT_PATH",
    "BadRow",
    "BadRowError",
    "Document",
    "Fields",
    "IndexReport",
    "LocalEngine",
    "PoolEngine",
    "RayEngine",
    "RetryPolicy",
    "Source",
    "WriteOutcome",
    "document_point_id",
    "documents",
    "index_corpus",
    "open_source",
    "stored_ids",
    "write_points",
]


def __getattr__(name: str) -> Any:
    if name == "RayEngine":  # Ray is optional and slow to import
        from laser_integrations.indexing.ray_engine import RayEngine

        return RayEngine
    raise AttributeError(f"module 'laser_integrations.indexing' has no attribute {name!r}")
