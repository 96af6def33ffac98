"""Move an Edge folder as a shard snapshot: index on a GPU box, serve from a Qdrant server or cluster.

An Edge shard and a server shard share one data format, and Edge reads server shard snapshots
(``EdgeShard.unpack_snapshot``), but qdrant-edge-py 0.9 cannot write one. :func:`write_snapshot` writes the
archive a server's shard snapshot is: a tar of ``segments/<id>.tar`` (each a segment's files under
``snapshot/files/``) and ``wal/``. Beside it, ``<snapshot>.laser.json`` keeps what the archive does not: the
embedding provenance and the shard's vector configuration.

Round trip on one machine (tested)::

    with EdgeStore("./edge-data") as store:
        write_snapshot(store, "docs.snapshot")
    restore_snapshot("docs.snapshot", "./edge-copy")      # EdgeShard.unpack_snapshot, then a normal EdgeStore

Into a Qdrant server (the documented shard-snapshot route, not run here: no server on this machine)::

    client = QdrantClient(url="http://qdrant:6333")
    ensure_collection(client, "docs", provenance)         # same size, cosine, one shard: records the provenance
    curl -X POST "http://qdrant:6333/collections/docs/shards/0/snapshots/upload?priority=snapshot" \\
         -H "Content-Type: multipart/form-data" -F "snapshot=@docs.snapshot"
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from pathlib import Path

try:
    import qdrant_edge as edge
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("Edge snapshots need qdrant-edge-py: pip install 'laser-integrations[edge]'") from error

from laser_integrations.stores.edge import PROVENANCE_FILE, EdgeStore

__all__ = ["SIDECAR_SUFFIX", "restore_snapshot", "write_snapshot"]

SIDECAR_SUFFIX = ".laser.json"
"""Appended to a snapshot's path for the file holding its provenance and vector configuration."""

_SHARD_CONFIG = "edge_config.json"


def write_snapshot(store: EdgeStore, snapshot: str | os.PathLike[str]) -> Path:
    """Flush ``store`` and write its shard as a server-format shard snapshot at ``snapshot``; returns the path.

    Hold off writes to ``store`` from other threads until this returns (the folder lock keeps other
    processes out).
    """
    store.flush()
    target = Path(snapshot)
    folder = store.path
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch, tarfile.open(target, "w") as archive:
        for segment in sorted((folder / "segments").iterdir()):
            if segment.name.startswith(".") or not segment.is_dir():
                continue
            inner = Path(scratch) / f"{segment.name}.tar"
            with tarfile.open(inner, "w") as segment_archive:
                segment_archive.add(segment, arcname="snapshot/files")
            archive.add(inner, arcname=f"segments/{segment.name}.tar")
        archive.add(folder / "wal", arcname="wal")
    sidecar = {"edge_config": _read_json(folder / _SHARD_CONFIG)}
    if (folder / PROVENANCE_FILE).exists():
        sidecar["provenance"] = _read_json(folder / PROVENANCE_FILE)
    Path(f"{target}{SIDECAR_SUFFIX}").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
    return target


def restore_snapshot(snapshot: str | os.PathLike[str], folder: str | os.PathLike[str]) -> EdgeStore:
    """Unpack a shard snapshot (:func:`write_snapshot`'s, or a server's) into the new Edge folder ``folder``.

    Uses ``<snapshot>.laser.json`` where present for the provenance and vector configuration; a server's
    snapshot carries its own configuration.
    """
    target = Path(folder)
    if target.exists() and any(target.iterdir()):
        raise ValueError(f"{target} is not empty: restore a snapshot into a new folder")
    edge.EdgeShard.unpack_snapshot(os.fspath(snapshot), os.fspath(target))
    sidecar_path = Path(f"{snapshot}{SIDECAR_SUFFIX}")
    if sidecar_path.exists():
        sidecar = _read_json(sidecar_path)
        (target / _SHARD_CONFIG).write_text(json.dumps(sidecar["edge_config"]), encoding="utf-8")
        if "provenance" in sidecar:
            (target / PROVENANCE_FILE).write_text(json.dumps(sidecar["provenance"], indent=2), encoding="utf-8")
    return EdgeStore(target)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))
