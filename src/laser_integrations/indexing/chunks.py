"""The steps every indexing engine shares, chunk by chunk: read in chunks, drop repeated ids, embed with checks,
build points, and count it all in an :class:`IndexReport`.

:func:`~laser_integrations.indexing.job.index_corpus` runs them in one process (local, pool); the Ray engine
(:mod:`~laser_integrations.indexing.ray_engine`) runs the same ones in its tasks and actors.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from laser_integrations.indexing.engines import encode_documents, tokenless_rows
from laser_integrations.indexing.sources import BadRow, BadRowError, Document

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


__all__ = [
    "IndexReport",
    "count_bad_rows",
    "embed_checked",
    "encode_documents",
    "iter_chunks",
    "to_points",
    "unique_in_chunk",
]

MAX_LISTED = 1000
"""At most this many failed ids (and 20 bad rows) are kept in a report; the counts are always exact."""


@dataclass
class IndexReport:
    """What one :func:`index_corpus` run did. ``embedded + skipped_present + bad_rows + duplicates + failed`` rows.

    Example:
        >>> report = IndexReport("docs", "local", embedded=270, skipped_present=5, wall_seconds=9.0)
        >>> report.ok, round(report.docs_per_second)
        (True, 30)
    """

    collection: str
    engine: str
    embedded: int = 0
    """Documents embedded and written by this run."""
    skipped_present: int = 0
    """Documents already in the collection (not embedded again)."""
    bad_rows: int = 0
    """Malformed rows skipped (``skip_bad_rows``)."""
    duplicates: int = 0
    """Rows repeating a point id already seen in the same chunk (the first one is kept)."""
    failed: int = 0
    """Documents embedded whose write failed after every retry (they are not in the collection)."""
    failed_ids: list[str] = field(default_factory=list)
    """Point ids of the failed documents (the first :data:`MAX_LISTED`)."""
    bad_row_examples: list[str] = field(default_factory=list)
    """``file:line: problem`` of the first skipped rows."""
    write_error: str | None = None
    """The last write error, when some documents failed."""
    aborted: str | None = None
    """Why the job stopped before the end of the corpus (``None`` when it read everything)."""
    points: int | None = None
    """Points in the collection at the end."""
    wall_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent checking stored ids, embedding and writing (in-process engines)."""

    @property
    def rows(self) -> int:
        return self.embedded + self.skipped_present + self.bad_rows + self.duplicates + self.failed

    @property
    def docs_per_second(self) -> float:
        """Embedded documents per second of wall time."""
        return self.embedded / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every document read is in the collection (bad rows aside, which were skipped on request)."""
        return self.failed == 0 and self.aborted is None

    def add(self, counts: Mapping[str, Any]) -> None:
        """Fold in a partial tally (``{"embedded": n, "failed_ids": [...], ...}``) from an engine's worker."""
        for name in ("embedded", "skipped_present", "bad_rows", "duplicates"):
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))
        failed = list(counts.get("failed_ids", ()))
        self.failed += len(failed)
        self.failed_ids.extend(failed[: MAX_LISTED - len(self.failed_ids)])
        examples = list(counts.get("bad_row_examples", ()))
        self.bad_row_examples.extend(examples[: 20 - len(self.bad_row_examples)])
        if counts.get("write_error"):
            self.write_error = counts["write_error"]

    def summary(self) -> str:
        """Lines for a person: counts, wall time, rate, and what went wrong."""
        lines = [
            f"collection {self.collection!r} ({self.engine} engine): {self.embedded} embedded, "
            f"{self.skipped_present} already present, {self.bad_rows} bad rows skipped, "
            f"{self.failed} failed to write, in {self.wall_seconds:.1f} s ({self.docs_per_second:.1f} docs/s)"
            + (f"; it now holds {self.points} points" if self.points is not None else "")
        ]
        if self.duplicates:
            lines.append(f"{self.duplicates} rows repeated an id within a chunk and were indexed once")
        if self.bad_row_examples:
            lines.append("skipped rows: " + "; ".join(self.bad_row_examples[:5]))
        if self.failed:
            shown = ", ".join(self.failed_ids[:10]) + (" ..." if self.failed > 10 else "")
            lines.append(f"not written (rerun to retry them): {shown}; last error: {self.write_error}")
        if self.aborted:
            lines.append(f"stopped early: {self.aborted}")
        return "\n".join(lines)


def to_points(point_ids: Sequence[str], payloads: Sequence[dict[str, Any]], vectors: np.ndarray) -> list[Any]:
    """``PointStruct`` objects (vectors as float lists) in LangChain's payload layout."""
    from qdrant_client import models

    return [
        models.PointStruct(id=point_id, vector=vector.tolist(), payload=payload)
        for point_id, payload, vector in zip(point_ids, payloads, vectors, strict=True)
    ]


def embed_checked(
    model: SentenceTransformer,
    encode: Any,
    texts: Sequence[str],
    wheres: Sequence[str],
    *,
    skip_bad_rows: bool,
    doc_ids: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[int], list[BadRow]]:
    """``encode(texts)``, turning "tokenizes to nothing" into a ``BadRowError`` naming the row, or skipping it.

    Returns the vectors of the kept texts, the kept indexes and the skipped rows.
    """
    try:
        return encode(texts), list(range(len(texts))), []
    except ValueError as error:
        if "no tokens" not in str(error):
            raise
    empty = set(tokenless_rows(model, texts))
    if not empty:
        raise RuntimeError("the model refused a chunk for an empty input, but no document tokenizes to nothing")
    bad = [
        BadRow(
            wheres[index], f"document {doc_ids[index] if doc_ids else index!r} tokenizes to nothing; nothing to embed"
        )
        for index in sorted(empty)
    ]
    if not skip_bad_rows:
        raise BadRowError(bad[0].where, bad[0].problem)
    kept = [index for index in range(len(texts)) if index not in empty]
    return encode([texts[index] for index in kept]), kept, bad


# -- the in-process loop ---------------------------------------------------------------------------------


def iter_chunks(rows: Iterator[Document | BadRow], size: int) -> Iterator[tuple[list[Document], list[BadRow]]]:
    chunk: list[Document] = []
    bad: list[BadRow] = []
    for row in rows:
        if isinstance(row, BadRow):
            bad.append(row)
            continue
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk, bad
            chunk, bad = [], []
    if chunk or bad:
        yield chunk, bad


def unique_in_chunk(chunk: list[Document], report: IndexReport) -> list[Document]:
    seen: dict[str, Document] = {}
    for document in chunk:
        seen.setdefault(document.point_id, document)
    report.duplicates += len(chunk) - len(seen)
    return list(seen.values())


def count_bad_rows(report: IndexReport, bad: Sequence[BadRow]) -> None:
    if bad:
        report.add({"bad_rows": len(bad), "bad_row_examples": [str(row) for row in bad]})
