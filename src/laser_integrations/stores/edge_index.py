"""Build the HNSW graph of an Edge folder in a child process: ``optimize()`` holds the GIL for minutes.

Run by :meth:`EdgeStore.build_index <laser_integrations.stores.edge.EdgeStore.build_index>` (and its async
twin) as ``python -m laser_integrations.stores.edge_index FOLDER M EF_CONSTRUCT``; the parent lets go of the
folder for the duration, so its own threads (and event loop) keep running.
"""

from __future__ import annotations

import sys

import qdrant_edge as edge

from laser_integrations.stores.folder_lock import FolderLock
from laser_integrations.validation import positive_int

__all__ = ["build_hnsw", "build_hnsw_command"]


def build_hnsw_command(folder: str, dimension: int, m: int, ef_construct: int) -> list[str]:
    """The command line that builds ``folder``'s HNSW graph in a child process."""
    values = (positive_int("dimension", dimension), positive_int("m", m), positive_int("ef_construct", ef_construct))
    return [sys.executable, "-m", __name__, folder, *map(str, values)]


def build_hnsw(folder: str, dimension: int, m: int, ef_construct: int) -> bool:
    """Lock ``folder``, build an HNSW graph over every segment, flush and close; returns whether anything was built."""
    lock = FolderLock.acquire(folder, "Edge folder")
    try:
        config = edge.EdgeConfig(
            vectors=edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine),
            hnsw_config=edge.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=1),
            optimizers=edge.EdgeOptimizersConfig(indexing_threshold=1),
        )
        shard = edge.EdgeShard.load(folder, config)
        built = shard.optimize()
        shard.flush()
        shard.close()
        return built
    finally:
        lock.release()


if __name__ == "__main__":
    folder, dimension, m, ef_construct = sys.argv[1], *map(int, sys.argv[2:5])
    print("built" if build_hnsw(folder, dimension, m, ef_construct) else "unchanged")
