"""``laser index``: embed a corpus of millions into a store, resumably, on one process, several devices or Ray.

>>> from laser_integrations import load_model                                          # doctest: +SKIP
>>> from laser_integrations.indexing import index_corpus
>>> from laser_integrations.stores import open_store
>>> with open_store("edge", path="./laser-index") as store:                            # doctest: +SKIP
...     print(index_corpus(load_model("laser-qwen3"), "corpus.jsonl", store=store).summary())

Engines (one contract, :class:`Engine`): ``"local"`` (one process), ``"pool"`` (:class:`PoolEngine`, one
process per device) and ``"ray"`` (:class:`RayEngine`, Ray actors; needs ``pip install
'laser-integrations[ray]'``, imported only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from laser_integrations.indexing.duplicates import ON_DUPLICATE, DuplicateIdError
from laser_integrations.indexing.engines import Embedded, Engine, LocalEngine, PoolEngine
from laser_integrations.indexing.job import DEFAULT_QDRANT_PATH, CapacityWarning, engine_named, index_corpus
from laser_integrations.indexing.report import IndexReport
from laser_integrations.indexing.sources import (
    MAX_PAYLOAD_CHARS,
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
    "MAX_PAYLOAD_CHARS",
    "ON_DUPLICATE",
    "BadRow",
    "BadRowError",
    "CapacityWarning",
    "Document",
    "DuplicateIdError",
    "Embedded",
    "Engine",
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
    "engine_named",
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
