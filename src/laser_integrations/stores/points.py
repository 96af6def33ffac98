"""What every store checks about the points it is given: UUID string ids, one vector and payload per id.

>>> canonical_id("6F1C7C52-3A8E-5E0B-9D1E-1A5E2C0F4B7D")
'6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d'
>>> point_matrix(["a"], np.zeros((2, 3)), [{}])
Traceback (most recent call last):
...
ValueError: upsert needs one vector and one payload per id: 1 ids, vectors of shape (2, 3), 1 payloads
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["canonical_id", "point_matrix", "uuid_for"]

_ID_NAMESPACE = uuid.UUID("0b8f3c1e-6d2a-5f47-9a3b-2c1d4e5f6a7b")


def canonical_id(point_id: str) -> str:
    """``point_id`` in the form Qdrant returns it (lower-case, hyphenated UUID); ``ValueError`` if not a UUID."""
    try:
        return str(uuid.UUID(str(point_id)))
    except ValueError:
        raise ValueError(
            f"point id {point_id!r} is not a UUID string; derive one with laser_integrations.qdrant.content_id"
        ) from None


def uuid_for(key: str) -> str:
    """``key`` if it is a UUID (canonical form), else a UUID derived from it: a point id for any framework id.

    >>> uuid_for("doc-1") == uuid_for("doc-1") != uuid_for("doc-2")
    True
    """
    try:
        return str(uuid.UUID(key))
    except ValueError:
        return str(uuid.uuid5(_ID_NAMESPACE, key))


def point_matrix(ids: Sequence[str], vectors: np.ndarray, payloads: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """``vectors`` as a float32 matrix, after checking that ids, vectors and payloads line up."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(ids) or len(payloads) != len(ids):
        raise ValueError(
            f"upsert needs one vector and one payload per id: {len(ids)} ids, vectors of shape "
            f"{matrix.shape}, {len(payloads)} payloads"
        )
    return matrix
