"""What one ``laser index`` job did, counted once by the job whatever the engine: :class:`IndexReport`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from laser_integrations.indexing.sources import BadRow

__all__ = ["MAX_LISTED", "IndexReport"]

MAX_LISTED = 1000
"""At most this many failed ids (20 bad rows, 10 duplicated ids) are kept in a report; the counts are exact."""


@dataclass
class IndexReport:
    """What one :func:`~laser_integrations.indexing.job.index_corpus` run did.

    Every row read is counted once: ``embedded + skipped_present + bad_rows + duplicates + failed + unsure``.

    Example:
        >>> report = IndexReport("qdrant:docs", "local", embedded=270, skipped_present=5, wall_seconds=9.0)
        >>> report.ok, round(report.docs_per_second)
        (True, 30)
    """

    store: str
    """Where the vectors went (the store's description)."""
    engine: str
    embedded: int = 0
    """Documents embedded and stored by this run (confirmed by the store)."""
    skipped_present: int = 0
    """Documents already in the store (not embedded again)."""
    bad_rows: int = 0
    """Malformed rows skipped (``skip_bad_rows``)."""
    duplicates: int = 0
    """Rows repeating the point id of another row, not indexed (the duplicate rule keeps one per id)."""
    duplicate_ids: list[str] = field(default_factory=list)
    """The document ids of the first duplicated rows."""
    duplicate_rule: str = "first"
    failed: int = 0
    """Documents not stored: their write failed after every retry, and the store confirmed they are absent."""
    failed_ids: list[str] = field(default_factory=list)
    """Point ids of the failed documents (the first :data:`MAX_LISTED`)."""
    unsure: int = 0
    """Documents whose write failed and whose presence the store could not be asked about afterwards."""
    truncated: int = 0
    """Documents longer than ``max_seq_length`` tokens: their vector reflects only the start of the text."""
    max_seq_length: int | None = None
    bad_row_examples: list[str] = field(default_factory=list)
    """``file:line: problem`` of the first skipped rows."""
    write_error: str | None = None
    """The last write error, when some documents failed."""
    aborted: str | None = None
    """Why the job stopped before the end of the corpus (``None`` when it read everything)."""
    points: int | None = None
    """Points in the store at the end, counted afresh (``None``: the store could not be counted)."""
    notes: list[str] = field(default_factory=list)
    """Warnings shown before the job started (the local-mode fence)."""
    wall_seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent asking the store which ids it holds, embedding and writing."""

    @property
    def rows(self) -> int:
        return self.embedded + self.skipped_present + self.bad_rows + self.duplicates + self.failed + self.unsure

    @property
    def docs_per_second(self) -> float:
        """Embedded documents per second of wall time."""
        return self.embedded / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every document read is in the store (bad rows and duplicates aside, as the rules say)."""
        return self.failed == 0 and self.unsure == 0 and self.aborted is None

    def add_bad_rows(self, bad: Sequence[BadRow]) -> None:
        self.bad_rows += len(bad)
        self.bad_row_examples.extend(str(row) for row in bad[: 20 - len(self.bad_row_examples)])

    def add_duplicate(self, doc_id: str) -> None:
        self.duplicates += 1
        if len(self.duplicate_ids) < 10:
            self.duplicate_ids.append(doc_id)

    def add_failed(self, point_ids: Sequence[str], error: str | None) -> None:
        self.failed += len(point_ids)
        self.failed_ids.extend(point_ids[: MAX_LISTED - len(self.failed_ids)])
        self.write_error = error or self.write_error

    def summary(self) -> str:
        """Lines for a person: counts, wall time, rate, and what went wrong."""
        held = "; the store could not be counted" if self.points is None else f"; it now holds {self.points} points"
        lines = [
            f"{self.store} ({self.engine} engine): {self.embedded} embedded, {self.skipped_present} already "
            f"present, {self.bad_rows} bad rows skipped, {self.duplicates} duplicates, {self.failed} failed to "
            f"write, in {self.wall_seconds:.1f} s ({self.docs_per_second:.1f} docs/s){held}"
        ]
        lines.extend(self.notes)
        if self.duplicates:
            shown = ", ".join(self.duplicate_ids) + (" ..." if self.duplicates > len(self.duplicate_ids) else "")
            lines.append(
                f"{self.duplicates} rows repeated the id of another row; the {self.duplicate_rule} occurrence of "
                f"each id was indexed (--on-duplicate): {shown}"
            )
        if self.truncated:
            lines.append(
                f"{self.truncated} documents were longer than {self.max_seq_length} tokens: their vectors reflect "
                "only their start (--max-seq-length)"
            )
        if self.bad_row_examples:
            lines.append("skipped rows: " + "; ".join(self.bad_row_examples[:5]))
        if self.failed:
            shown = ", ".join(self.failed_ids[:10]) + (" ..." if self.failed > 10 else "")
            lines.append(f"not written (rerun to retry them): {shown}; last error: {self.write_error}")
        if self.unsure:
            lines.append(
                f"{self.unsure} documents may or may not be stored: a write failed ({self.write_error}) and the "
                "store could not be asked afterwards; a rerun embeds those that are missing"
            )
        if self.aborted:
            lines.append(f"stopped early: {self.aborted}")
        return "\n".join(lines)
