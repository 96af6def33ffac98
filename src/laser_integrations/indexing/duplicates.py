"""One rule for rows that repeat a point id, applied wherever the repeat falls: in one chunk, across chunks,
and on a resumed job.

- ``"first"`` (default): the first row with an id is indexed; later ones are counted as duplicates.
- ``"last"``: the last row with an id is indexed; the corpus is read once more first, to find it.
- ``"error"``: the job refuses before loading the model, naming the repeated ids (one more read as well).

Only the chosen row is ever written, so a resumed job finds exactly that row stored and skips the others
again. The rule applies within one job; rerunning with another rule does not rewrite points already stored.

Example:
    >>> from laser_integrations.indexing.sources import Document
    >>> rows = [Document(p, p, "t", {}, f"c.jsonl:{n}") for n, p in enumerate(["a", "b", "a"], start=1)]
    >>> rule = Duplicates("first")
    >>> [rule.keep(row) for row in rows]
    [True, True, False]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from laser_integrations.indexing.sources import BadRow, Document

__all__ = ["ON_DUPLICATE", "DuplicateIdError", "Duplicates", "repeated_ids"]

ON_DUPLICATE = ("first", "last", "error")


class DuplicateIdError(ValueError):
    """The corpus repeats point ids and ``on_duplicate="error"``."""


class Duplicates:
    """Decides, row by row in corpus order, whether a row is the one of its id to index.

    Args:
        rule: ``"first"``, ``"last"`` or ``"error"``.
        repeats: For ``"last"``: ``{point_id: rows with it}`` of the ids that repeat (:func:`repeated_ids`).

    Memory: ``"first"`` keeps every point id of the job in a set (about 100 bytes an id: 100 MB for 1M rows).
    """

    def __init__(self, rule: str = "first", repeats: dict[str, int] | None = None) -> None:
        if rule not in ON_DUPLICATE:
            raise ValueError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}, got {rule!r}")
        if rule == "last" and repeats is None:
            raise ValueError("the 'last' rule needs the repeated ids (repeated_ids(source))")
        self.rule = rule
        self.repeats = repeats or {}
        self.seen: set[str] = set()
        self.occurrences: Counter[str] = Counter()

    def keep(self, document: Document) -> bool:
        """Whether ``document`` is the row of its id that gets indexed."""
        point_id = document.point_id
        if self.rule == "last":
            if point_id not in self.repeats:
                return True
            self.occurrences[point_id] += 1
            return self.occurrences[point_id] == self.repeats[point_id]
        if point_id in self.seen:
            return False
        self.seen.add(point_id)
        return True


def repeated_ids(rows: Iterable[Document | BadRow], rule: str) -> dict[str, int]:
    """``{point_id: count}`` of the ids that occur more than once; for ``"error"``, refuse when there is any.

    Raises:
        DuplicateIdError: ``rule == "error"`` and an id repeats (the first few are named, with the count).
    """
    counts: Counter[str] = Counter()
    first_rows: dict[str, Document] = {}
    for row in rows:
        if isinstance(row, Document):
            counts[row.point_id] += 1
            first_rows.setdefault(row.point_id, row)
    repeats = {point_id: count for point_id, count in counts.items() if count > 1}
    if repeats and rule == "error":
        named = [f"{first_rows[p].doc_id!r} ({n} rows, first at {first_rows[p].where})" for p, n in repeats.items()]
        shown = "; ".join(named[:5]) + (" ..." if len(named) > 5 else "")
        raise DuplicateIdError(
            f"{len(repeats)} ids occur more than once: {shown}. Pass --on-duplicate first or last to index one row "
            "per id"
        )
    return repeats
