"""The opt-in search indexes of an Edge folder, built in a child process (``optimize()`` holds the GIL).

Two kinds, both measured against exact search (see the README's store table):

- ``"int8"``: scalar-quantized copies of the vectors (1 byte a component, kept in RAM), scanned in full and
  the best ``oversampling`` x ``limit`` rescored with the original vectors: a few times faster than exact
  at the same recall on random 1024-dim vectors, and cheap to build;
- ``"hnsw"``: an HNSW graph: milliseconds a query, slow to build, and low recall on random 1024-dim vectors.

:meth:`EdgeStore.build_index <laser_integrations.stores.edge.EdgeStore.build_index>` runs
``python -m laser_integrations.stores.edge_index FOLDER DIMENSION RECORD_JSON`` and records the index in
the folder, so a reopened store searches through it.

>>> index_record("int8")
{'kind': 'int8', 'oversampling': 2.0}
>>> index_record("ivf")
Traceback (most recent call last):
...
ValueError: unknown index 'ivf'; choose one of hnsw, int8
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any

import qdrant_edge as edge

from laser_integrations.stores.folder_lock import FolderLock
from laser_integrations.validation import positive_int

__all__ = ["INDEX_KINDS", "build_command", "build_index", "index_record", "search_params"]

INDEX_KINDS = ("hnsw", "int8")


def index_record(
    kind: str, *, m: int = 16, ef_construct: int = 100, hnsw_ef: int = 128, oversampling: float = 2.0
) -> dict[str, Any]:
    """The checked settings of an index ``kind``, as recorded in the folder."""
    if kind == "hnsw":
        return {
            "kind": kind,
            "m": positive_int("m", m),
            "ef_construct": positive_int("ef_construct", ef_construct),
            "hnsw_ef": positive_int("hnsw_ef", hnsw_ef),
        }
    if kind == "int8":
        if not oversampling >= 1.0:
            raise ValueError(f"oversampling must be at least 1.0, got {oversampling!r}")
        return {"kind": kind, "oversampling": float(oversampling)}
    raise ValueError(f"unknown index {kind!r}; choose one of {', '.join(INDEX_KINDS)}")


def search_params(record: Mapping[str, Any] | None) -> edge.SearchParams:
    """How to search a folder holding the index ``record`` (``None``: exact)."""
    if record is None:
        return edge.SearchParams(exact=True)
    if record["kind"] == "hnsw":
        return edge.SearchParams(hnsw_ef=record["hnsw_ef"])
    rescore = edge.QuantizationSearchParams(rescore=True, oversampling=record["oversampling"])
    return edge.SearchParams(quantization=rescore)


def build_command(folder: str, dimension: int, record: Mapping[str, Any]) -> list[str]:
    """The command line that builds the index ``record`` over ``folder`` in a child process."""
    return [sys.executable, "-m", __name__, folder, str(positive_int("dimension", dimension)), json.dumps(record)]


def build_index(folder: str, dimension: int, record: Mapping[str, Any]) -> bool:
    """Lock ``folder``, build the index ``record`` over every segment, flush and close; whether anything changed."""
    vectors = edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine)
    every_segment = edge.EdgeOptimizersConfig(indexing_threshold=1)
    if record["kind"] == "hnsw":
        graph = edge.HnswIndexConfig(m=record["m"], ef_construct=record["ef_construct"], full_scan_threshold=1)
        config = edge.EdgeConfig(vectors=vectors, hnsw_config=graph, optimizers=every_segment)
    else:  # m=0: no graph, only the quantized copies
        config = edge.EdgeConfig(
            vectors=vectors,
            hnsw_config=edge.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=1),
            quantization_config=edge.ScalarQuantizationConfig(edge.ScalarType.Int8, quantile=0.99, always_ram=True),
            optimizers=every_segment,
        )
    lock = FolderLock.acquire(folder, "Edge folder")
    try:
        shard = edge.EdgeShard.load(folder, config)
        changed = shard.optimize()
        shard.flush()
        shard.close()
        return changed
    finally:
        lock.release()


if __name__ == "__main__":
    print("built" if build_index(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])) else "unchanged")
