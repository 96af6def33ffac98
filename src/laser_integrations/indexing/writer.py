"""The one place ``laser index`` talks to a store: which ids are stored, and the write with bounded retries.

Both go through the :class:`~laser_integrations.stores.base.Store` seam, from the job's one writer process.
A write that fails after every retry is followed by a question to the store (which of those ids landed?),
so the counts agree with a fresh count of the store; when that question fails too, the ids are reported
as unsure instead of guessed.

Example:
    >>> from laser_integrations.provenance import EmbeddingProvenance
    >>> from laser_integrations.stores import open_store
    >>> store = open_store("local", collection="docs")                               # in memory
    >>> _ = store.ensure(EmbeddingProvenance("m", 1, "", 2, "plain"))
    >>> ids = ["6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d"]
    >>> write_points(store, ids, np.array([[1.0, 0.0]]), [{}]).written
    1
    >>> stored_ids(store, ids)
    {'6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d'}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from laser_integrations.stores.base import Store
from laser_integrations.validation import positive_int

__all__ = ["RetryPolicy", "WriteOutcome", "stored_ids", "write_points"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a store call is retried: ``attempts`` tries, sleeping ``backoff * 2**i``."""

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0

    def __post_init__(self) -> None:
        positive_int("attempts", self.attempts)
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        return min(self.backoff * 2**attempt, self.max_backoff)


@dataclass
class WriteOutcome:
    """What one :func:`write_points` call achieved; ``written + len(failed_ids) + len(unsure_ids)`` points."""

    written: int = 0
    """Points the store acknowledged, or confirmed present after a failed write."""
    failed_ids: list[str] = field(default_factory=list)
    """Points the store confirmed absent after every retry."""
    unsure_ids: list[str] = field(default_factory=list)
    """Points of a failed write whose presence the store could not be asked about."""
    error: str | None = None
    """The last error of a batch that did not land, as ``Type: message``."""


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, sleep: Callable[[float], None] = time.sleep) -> T:
    """``call()``, retried on any exception up to ``policy.attempts`` times with exponential back-off."""
    for attempt in range(policy.attempts):
        try:
            return call()
        except Exception:
            if attempt == policy.attempts - 1:
                raise
            sleep(policy.delay(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def stored_ids(store: Store, ids: Sequence[str], policy: RetryPolicy | None = None) -> set[str]:
    """Which of ``ids`` the store holds (retried).

    Raises:
        Exception: The store's error, once the retries are spent.
    """
    if not ids:
        return set()
    return call_with_retries(lambda: store.present(list(ids)), policy or RetryPolicy())


def write_points(
    store: Store,
    ids: Sequence[str],
    vectors: np.ndarray,
    payloads: Sequence[Mapping[str, Any]],
    *,
    batch_size: int = 64,
    policy: RetryPolicy | None = None,
) -> WriteOutcome:
    """Upsert in batches of ``batch_size``, each retried; report what did not land instead of raising.

    An acknowledged batch is stored (a crash right after loses nothing). Point ids are deterministic, so a
    retried batch overwrites itself and never duplicates. After a batch fails every retry, the store is
    asked which of its ids landed anyway (a partial write), so ``written`` counts exactly what is stored.
    """
    policy = policy or RetryPolicy()
    outcome = WriteOutcome()
    for start in range(0, len(ids), batch_size):
        batch = list(ids[start : start + batch_size])
        rows = vectors[start : start + batch_size]
        bodies = list(payloads[start : start + batch_size])
        try:
            call_with_retries(lambda batch=batch, rows=rows, bodies=bodies: store.upsert(batch, rows, bodies), policy)
        except Exception as error:
            outcome.error = f"{type(error).__name__}: {error}"
            _settle(store, batch, outcome, policy)
        else:
            outcome.written += len(batch)
    return outcome


def _settle(store: Store, batch: list[str], outcome: WriteOutcome, policy: RetryPolicy) -> None:
    """Split a failed batch into what the store holds anyway and what it does not (or cannot say)."""
    try:
        landed = stored_ids(store, batch, policy)
    except Exception:
        outcome.unsure_ids.extend(batch)
        return
    outcome.written += len(landed)
    outcome.failed_ids.extend(point_id for point_id in batch if point_id not in landed)
