"""The one place ``laser index`` talks to Qdrant: which ids are stored, and the write with bounded retries.

Every engine calls these two functions: the local and pool engines from the one process that owns the
client, the Ray engine from its workers (a Qdrant server) or from the driver (embedded Qdrant). So the
only difference between a laptop and a cluster is the client passed in.

Example:
    >>> from qdrant_client import models
    >>> from laser_integrations.qdrant import connect
    >>> client = connect()
    >>> client.create_collection("docs", vectors_config=models.VectorParams(size=2, distance=models.Distance.COSINE))
    True
    >>> point = models.PointStruct(id="6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d", vector=[1.0, 0.0], payload={})
    >>> write_points(client, "docs", [point]).written
    1
    >>> stored_ids(client, "docs", ["6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d"])
    {'6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d'}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["RetryPolicy", "WriteOutcome", "stored_ids", "write_points"]

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a Qdrant call is retried: ``attempts`` tries, sleeping ``backoff * 2**i``."""

    attempts: int = 4
    backoff: float = 0.5
    max_backoff: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.backoff < 0:
            raise ValueError(f"backoff must be >= 0, got {self.backoff}")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        return min(self.backoff * 2**attempt, self.max_backoff)


@dataclass
class WriteOutcome:
    """What one :func:`write_points` call achieved."""

    written: int = 0
    failed_ids: list[str] = field(default_factory=list)
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


def stored_ids(client: Any, collection: str, ids: Sequence[str], policy: RetryPolicy | None = None) -> set[str]:
    """Which of ``ids`` the collection already holds (one ``retrieve`` without payloads or vectors, retried).

    Raises:
        Exception: Qdrant's error, once the retries are spent (nothing was embedded for these ids yet).
    """
    if not ids:
        return set()
    records = call_with_retries(
        lambda: client.retrieve(collection, ids=list(ids), with_payload=False, with_vectors=False),
        policy or RetryPolicy(),
    )
    return {str(record.id) for record in records}


def write_points(
    client: Any,
    collection: str,
    points: Sequence[Any],
    *,
    batch_size: int = 64,
    policy: RetryPolicy | None = None,
) -> WriteOutcome:
    """Upsert ``points`` in batches of ``batch_size``, each retried; report what did not land instead of raising.

    ``wait=True``: when a batch returns, its points are stored, so a crash right after loses nothing. Point
    ids are deterministic, so a retried or repeated batch overwrites itself and never duplicates.

    Args:
        client: A ``QdrantClient`` (or anything with its ``upsert``).
        collection: The collection (checked by ``ensure_collection`` before the first write).
        points: ``qdrant_client.models.PointStruct`` objects.
        batch_size: Points per request (keeps requests far below Qdrant's 32 MB limit for 4096-d vectors).
        policy: Attempts and back-off per batch (default: 4 tries, 0.5 s doubling).

    Example:
        >>> outcome = write_points(client, "docs", points)       # doctest: +SKIP
        >>> outcome.written, outcome.failed_ids                   # doctest: +SKIP
        (64, [])
    """
    policy = policy or RetryPolicy()
    outcome = WriteOutcome()
    for start in range(0, len(points), batch_size):
        batch = list(points[start : start + batch_size])
        try:
            call_with_retries(lambda batch=batch: client.upsert(collection, points=batch, wait=True), policy)
        except Exception as error:
            outcome.failed_ids.extend(str(point.id) for point in batch)
            outcome.error = f"{type(error).__name__}: {error}"
        else:
            outcome.written += len(batch)
    return outcome
