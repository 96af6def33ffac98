"""A :class:`~laser_integrations.stores.base.Store` over a Qdrant Edge shard folder: millions of points in-process.

Qdrant Edge (``qdrant-edge-py``, beta, pinned) is Qdrant's own storage engine embedded in this process:
segments, a write-ahead log, memory-mapped vectors, the server's data format. One folder holds one shard
(Edge has no collections). Beside the shard the folder holds:

- ``laser_provenance.json``: the embedding provenance, written atomically and checked before the first write;
- ``.laser.lock``: an OS lock, so a second process opening the folder is refused at once;
- ``laser_index.json``: the search index :meth:`EdgeStore.build_index` built, if any.

Search is exact (brute force over memory-mapped vectors) by default. :meth:`EdgeStore.build_index` opts
into an int8-quantized scan or an HNSW graph (:mod:`~laser_integrations.stores.edge_index`).

Example:
    >>> import tempfile
    >>> from laser_integrations.provenance import EmbeddingProvenance
    >>> folder = tempfile.mkdtemp()
    >>> with EdgeStore(folder) as store:
    ...     _ = store.ensure(EmbeddingProvenance("smollm2", 3, "", 2, "plain"))
    ...     store.upsert(["00000000-0000-0000-0000-000000000001"], np.array([[1.0, 0.0]]), [{"text": "a"}])
    >>> with EdgeStore(folder) as store:
    ...     store.count(), store.search([1.0, 0.1], limit=1)[0].payload
    (1, {'text': 'a'})
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import qdrant_edge as edge
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("EdgeStore needs qdrant-edge-py: pip install 'laser-integrations[edge]'") from error

from laser_integrations.provenance import EmbeddingProvenance, ProvenanceMismatchError, check_provenance
from laser_integrations.stores.base import Hit, StoreLockedError
from laser_integrations.stores.edge_index import build_command, index_record, search_params
from laser_integrations.stores.folder_lock import FolderLock
from laser_integrations.stores.points import canonical_id, point_matrix
from laser_integrations.validation import positive_int

__all__ = ["DEFAULT_FLUSH_EVERY", "INDEX_FILE", "PROVENANCE_FILE", "EdgeStore", "ensure_embedding_provenance"]

PROVENANCE_FILE = "laser_provenance.json"
"""The provenance record beside the shard, in the shard's folder."""

INDEX_FILE = "laser_index.json"
"""The search index :meth:`EdgeStore.build_index` built, so a reopened store searches through it."""

DEFAULT_FLUSH_EVERY = 50_000
"""Points between automatic flushes: each flush lets Edge drop the write-ahead log written before it."""

_SHARD_CONFIG = "edge_config.json"


class EdgeStore:
    """The Qdrant Edge shard in folder ``path`` (created on the first :meth:`ensure` or write).

    Args:
        path: The shard's folder; one process at a time may open it.
        dimension: The vector size, for a store filled without a provenance (framework tests, raw vectors);
            with a provenance, :meth:`ensure` sets it.
        flush_every: Flush after this many upserted points, so the write-ahead log stays bounded.
        exact: Search exactly even where :meth:`build_index` recorded an index in the folder.

    Raises:
        StoreLockedError: Another process (or another open ``EdgeStore`` here) has the folder open.
        ValueError: ``path`` is a qdrant-client local-mode folder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        dimension: int | None = None,
        flush_every: int = DEFAULT_FLUSH_EVERY,
        exact: bool = False,
    ) -> None:
        self._path = Path(path)
        self._flush_every = positive_int("flush_every", flush_every)
        if (self._path / "meta.json").exists() and (self._path / "collection").is_dir():
            raise ValueError(f"{self._path} is a qdrant-client local-mode folder; open it with --store local")
        self._lock: FolderLock | None = FolderLock.acquire(self._path, "Edge folder")
        self._unflushed = 0
        self._exact = exact
        try:
            self._shard: edge.EdgeShard | None = self._load() if (self._path / _SHARD_CONFIG).exists() else None
            self._provenance = self._read_provenance()
            self._index = _read_json(self._path / INDEX_FILE)
        except BaseException:
            self._release()
            raise
        self._dimension = self._stored_dimension() or dimension

    @property
    def path(self) -> Path:
        """The shard's folder."""
        return self._path

    @property
    def description(self) -> str:
        """``"edge:/data/shard"``."""
        return f"edge:{self._path}"

    @property
    def max_points(self) -> int | None:
        """``None``: vectors are memory-mapped from disk, so the folder reopens whatever its size."""
        return None

    def ensure(self, provenance: EmbeddingProvenance, *, adopt: bool = False) -> EmbeddingProvenance:
        """Create the shard recording ``provenance``, or check the one recorded; nothing is written on a mismatch.

        Raises:
            ProvenanceMismatchError: The folder records other settings, holds vectors of another size, or
                holds points without a record (and ``adopt`` is off).
        """
        where = f"Edge folder {str(self._path)!r}"
        if self._provenance is not None:
            check_provenance(self._provenance, provenance, where)
            return self._provenance
        stored_dimension = self._stored_dimension()
        if stored_dimension is not None and stored_dimension != provenance.dimension:
            raise ProvenanceMismatchError(
                f"{where} holds {stored_dimension}-dimensional vectors; these embeddings are "
                f"{provenance.dimension}-dimensional ({provenance.model}). Use another folder."
            )
        points = self.count()
        if points and not adopt:
            raise ProvenanceMismatchError(
                f"{where} holds {points} points but records no embedding provenance, so they may come from another "
                "model or K; pass adopt=True if they were made with these settings, or use another folder"
            )
        _write_json_atomically(self._path / PROVENANCE_FILE, provenance.to_dict())
        self._provenance = provenance
        self._dimension = provenance.dimension
        self._require_shard()
        return provenance

    def provenance(self) -> EmbeddingProvenance | None:
        """The recorded provenance (``None`` for a new folder or one filled without it)."""
        return self._provenance

    def present(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` are stored (looked up by id, not scanned)."""
        if not ids or self._shard is None:
            return set()
        wanted = {canonical_id(point_id): point_id for point_id in ids}
        found = self._open().retrieve(list(wanted), with_payload=False, with_vector=False)
        return {wanted[str(record.id)] for record in found}

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> None:
        """Write (or overwrite) points; once this returns they are in the write-ahead log and survive a crash."""
        if not len(ids):
            return
        matrix = point_matrix(ids, vectors, payloads)
        shard = self._require_shard(matrix.shape[1])
        if matrix.shape[1] != self._dimension:
            raise ValueError(f"{self.description} holds {self._dimension}-dimensional vectors, got {matrix.shape[1]}")
        points = [
            edge.Point(canonical_id(point_id), row, dict(payload))
            for point_id, row, payload in zip(ids, matrix.tolist(), payloads, strict=True)
        ]
        shard.update(edge.UpdateOperation.upsert_points(points))
        self._unflushed += len(points)
        if self._unflushed >= self._flush_every:
            self.flush()

    def search(self, vector: Sequence[float] | np.ndarray, limit: int = 10) -> list[Hit]:
        """The ``limit`` nearest points by cosine similarity, best first (exact unless :meth:`build_index` ran)."""
        if self._shard is None:
            return []
        params = search_params(None if self._exact else self._index)
        request = edge.QueryRequest(
            limit=positive_int("limit", limit),
            query=edge.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            with_payload=True,
            params=params,
        )
        found = self._open().query(request)
        return [Hit(str(point.id), float(point.score), dict(point.payload or {})) for point in found]

    def payloads(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The payload of each of ``ids`` that is stored, by id (for the frameworks' get-by-id)."""
        if not ids or self._shard is None:
            return {}
        wanted = {canonical_id(point_id): point_id for point_id in ids}
        found = self._open().retrieve(list(wanted), with_payload=True, with_vector=False)
        return {wanted[str(record.id)]: dict(record.payload or {}) for record in found}

    def delete(self, ids: Sequence[str]) -> None:
        """Delete the points ``ids`` (missing ones are ignored)."""
        if ids and self._shard is not None:
            points = [canonical_id(point_id) for point_id in ids]
            self._open().update(edge.UpdateOperation.delete_points(points))

    def delete_where(self, key: str, value: str | int | bool) -> None:
        """Delete every point whose payload field ``key`` equals ``value``."""
        if self._shard is not None:
            condition = edge.FieldCondition(key=key, match=edge.MatchValue(value))
            self._open().update(edge.UpdateOperation.delete_points_by_filter(edge.Filter(must=[condition])))

    def count(self) -> int:
        """The exact number of points."""
        return 0 if self._shard is None else self._open().count(edge.CountRequest(exact=True))

    def flush(self) -> None:
        """Write every acknowledged point into the segments, so the write-ahead log before it can be dropped."""
        if self._shard is not None:
            self._shard.flush()
        self._unflushed = 0

    @property
    def index(self) -> dict[str, Any] | None:
        """The search index :meth:`build_index` recorded in the folder (``None``: exact search only)."""
        return self._index

    def build_index(self, kind: str = "int8", **options: Any) -> None:
        """Build a search index over the stored points and search through it from now on (opt-in).

        ``kind`` is ``"int8"`` (quantized full scan, rescored: ``oversampling=2.0``) or ``"hnsw"`` (a graph:
        ``m=16, ef_construct=100, hnsw_ef=128``); see :mod:`~laser_integrations.stores.edge_index` for what
        each costs. Edge's ``optimize()`` holds the GIL for minutes, so the build runs in a child process
        while this one waits (:meth:`abuild_index` from async code). The index is recorded in the folder and
        used by every later ``EdgeStore`` on it (``exact=True`` to bypass it).
        """
        record = index_record(kind, **options)
        command = self._hand_over_for_index(record)
        try:
            child = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            self._take_back()
        self._finish_index(child.returncode, child.stderr, record)

    async def abuild_index(self, kind: str = "int8", **options: Any) -> None:
        """:meth:`build_index` without blocking the event loop (do not use the store until it returns)."""
        import asyncio

        record = index_record(kind, **options)
        command = self._hand_over_for_index(record)
        try:
            child = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, stderr = await child.communicate()
        finally:
            self._take_back()
        self._finish_index(child.returncode, stderr.decode(errors="replace"), record)

    def close(self) -> None:
        """Flush, close the shard and release the folder; idempotent."""
        try:
            if self._shard is not None:
                self._shard.flush()
                self._shard.close()
        finally:
            self._shard = None
            self._release()

    def __enter__(self) -> EdgeStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EdgeStore({str(self._path)!r})"

    # -- internals -----------------------------------------------------------------------------------------

    def _hand_over_for_index(self, record: dict[str, Any]) -> list[str]:
        self._open()
        command = build_command(str(self._path), self._require_dimension(), record)
        self.close()
        return command

    def _take_back(self) -> None:
        self._lock = FolderLock.acquire(self._path, "Edge folder")
        self._shard = self._load()

    def _finish_index(self, returncode: int | None, stderr: str, record: dict[str, Any]) -> None:
        if returncode != 0:
            raise RuntimeError(f"building the {record['kind']} index of {self.description} failed: {stderr[-2000:]}")
        _write_json_atomically(self._path / INDEX_FILE, record)
        self._index = record

    def _load(self) -> edge.EdgeShard:
        try:
            return edge.EdgeShard.load(str(self._path))
        except Exception as error:
            if "WouldBlock" in str(error):  # the shard's own WAL lock: opened without this class
                raise StoreLockedError(f"Edge folder {self._path} is open in another process") from None
            raise

    def _open(self) -> edge.EdgeShard:
        if self._lock is None:
            raise ValueError(f"{self.description} is closed")
        if self._shard is None:
            raise ValueError(f"{self.description} holds no shard yet: call ensure() or upsert() first")
        return self._shard

    def _require_dimension(self) -> int:
        if self._dimension is None:
            raise ValueError(f"{self.description} does not know its vector size: call ensure() or pass dimension=")
        return self._dimension

    def _require_shard(self, dimension: int | None = None) -> edge.EdgeShard:
        if self._lock is None:
            raise ValueError(f"{self.description} is closed")
        if self._shard is None:
            if self._dimension is None:
                self._dimension = dimension
            params = edge.EdgeVectorParams(size=self._require_dimension(), distance=edge.Distance.Cosine)
            self._shard = edge.EdgeShard.create(str(self._path), edge.EdgeConfig(vectors=params))
        return self._shard

    def _read_provenance(self) -> EmbeddingProvenance | None:
        path = self._path / PROVENANCE_FILE
        if not path.exists():
            return None
        try:
            return EmbeddingProvenance.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise ProvenanceMismatchError(f"cannot read the embedding provenance in {path}: {error}") from None

    def _stored_dimension(self) -> int | None:
        path = self._path / _SHARD_CONFIG
        if not path.exists():
            return None
        vectors = json.loads(path.read_text(encoding="utf-8")).get("vectors", {})
        return vectors.get("", {}).get("size")

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


def ensure_embedding_provenance(store: EdgeStore, embeddings: Any) -> None:
    """Record or check the provenance of a LaSER embedding in ``store`` (other embeddings carry none to check)."""
    provenance = getattr(embeddings, "provenance", None)
    if isinstance(provenance, EmbeddingProvenance):
        store.ensure(provenance)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _write_json_atomically(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the new one, never half of one."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2, sort_keys=True)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
