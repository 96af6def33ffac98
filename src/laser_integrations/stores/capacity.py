"""How many points a store can take: qdrant-client's local mode is fenced before anything is embedded.

Local mode (``QdrantClient(path=...)``) is a pure-Python stand-in: on reopen it reads every vector
back as pickled float lists into float64 arrays. Measured in issue 18 (2 cores, 24 GB, 1024-dim float32
unit vectors, qdrant-client 1.20.0): reopening 100,000 points peaked at 6.5 GB (about 65 KB a point),
and 300,000 points did not reopen within 12 GiB. A collection past that point costs hours of embedding
and then never opens again, so :func:`check_capacity` refuses it before the first vector is made.

>>> local_mode_max_points(1024, ram_bytes=24 * 10**9)
184615
>>> local_mode_max_points(64, ram_bytes=24 * 10**9)
2953846
"""

from __future__ import annotations

import os
from typing import Protocol

__all__ = [
    "LOCAL_MODE_REOPEN_BYTES_PER_POINT",
    "LOCAL_MODE_REOPEN_DIMENSION",
    "LOCAL_MODE_RAM_SHARE",
    "LOCAL_MODE_WARN_POINTS",
    "StoreCapacityError",
    "check_capacity",
    "local_mode_max_points",
    "physical_ram_bytes",
]

LOCAL_MODE_WARN_POINTS = 20_000
"""Above this many points qdrant-client itself warns that local mode is not meant for the collection."""

LOCAL_MODE_REOPEN_BYTES_PER_POINT = 6.5e9 / 100_000
"""Peak memory per point while local mode reopens a folder: 6.5 GB for 100,000 points (issue 18's table)."""

LOCAL_MODE_REOPEN_DIMENSION = 1024
"""The vector dimension that measurement used; the cost scales with it (one float list entry per component)."""

LOCAL_MODE_RAM_SHARE = 0.5
"""The share of physical RAM a reopen may take and leave the machine usable (100k points took 6.5 of 24 GB)."""

_MEASURED = (
    "measured for 1024-dim vectors on 2 cores/24 GB: 100,000 points upsert in 6 min and take 55 s and 6.5 GB "
    "to reopen; 300,000 points did not reopen within 12 GiB"
)


class StoreCapacityError(ValueError):
    """The store cannot hold (and later reopen) the points a job would write; raised before embedding."""


class _Sized(Protocol):
    @property
    def description(self) -> str: ...

    @property
    def max_points(self) -> int | None: ...


def physical_ram_bytes() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def local_mode_max_points(dimension: int, *, ram_bytes: int | None = None) -> int:
    """The most ``dimension``-sized points a local-mode folder can hold and still reopen in this machine's RAM.

    Half of ``ram_bytes`` (default: physical RAM) over the measured reopen cost per point, scaled by dimension.
    """
    ram = physical_ram_bytes() if ram_bytes is None else ram_bytes
    per_point = LOCAL_MODE_REOPEN_BYTES_PER_POINT * dimension / LOCAL_MODE_REOPEN_DIMENSION
    return int(LOCAL_MODE_RAM_SHARE * ram / per_point)


def check_capacity(store: _Sized, points_after: int) -> str | None:
    """Refuse a job that would leave ``store`` with more points than it can reopen; warn above 20,000 in local mode.

    Call it before embedding anything, with the count the store will hold when the job is done (the corpus
    size for a new job, stored plus missing for a resumed one).

    Returns:
        The warning text for a local-mode store above :data:`LOCAL_MODE_WARN_POINTS` (``None`` otherwise);
        the caller shows it (``warnings.warn`` or a log line).

    Raises:
        StoreCapacityError: ``points_after`` is above ``store.max_points``; one line naming the ways out.

    Example:
        >>> class Local:
        ...     description, max_points, warn_points = "qdrant:local:/data/docs", 184615, LOCAL_MODE_WARN_POINTS
        >>> check_capacity(Local(), 1_000) is None
        True
        >>> check_capacity(Local(), 50_000)[:60]
        'qdrant:local:/data/docs will hold 50,000 points; local mode '
        >>> check_capacity(Local(), 1_000_000)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        laser_integrations.stores.capacity.StoreCapacityError: qdrant:local:/data/docs would hold 1,000,000 points, ...
    """
    limit = store.max_points
    if limit is not None and points_after > limit:
        raise StoreCapacityError(
            f"{store.description} would hold {points_after:,} points, more than the {limit:,} it could reopen "
            f"on this machine's RAM ({_MEASURED}); index into a Qdrant Edge folder with --store edge, "
            "or a Qdrant server with --qdrant-url"
        )
    warn_above = getattr(store, "warn_points", None)
    if warn_above is not None and points_after > warn_above:
        return (
            f"{store.description} will hold {points_after:,} points; local mode is meant for up to "
            f"{warn_above:,} ({_MEASURED}). Use --store edge or --qdrant-url for large collections."
        )
    return None
