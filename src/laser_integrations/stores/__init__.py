"""Where vectors go: one :class:`Store` contract, a Qdrant Edge folder or a Qdrant collection behind it.

Which store for which size (see the README's indexing section for the measured figures):

- ``"edge"``: a Qdrant Edge shard folder (:class:`EdgeStore`), the default for a path; millions of points on
  one machine, reopened in seconds;
- ``"local"``: qdrant-client's local mode (a folder, or in memory): small collections, and the frameworks'
  own Qdrant stores; fenced by :func:`check_capacity`;
- ``"server"``: a Qdrant server or cluster (:class:`QdrantStore` over ``url``), beyond one machine.

>>> from laser_integrations.provenance import EmbeddingProvenance
>>> with open_store("local") as store:                                  # in memory
...     store.ensure(EmbeddingProvenance("smollm2", 3, "", 2, "plain")).dimension
2
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from laser_integrations.lazy import lazy_exports
from laser_integrations.stores.base import Hit, Store, StoreLockedError
from laser_integrations.stores.capacity import StoreCapacityError, check_capacity

if TYPE_CHECKING:
    from laser_integrations.stores.edge import EdgeStore
    from laser_integrations.stores.edge_snapshot import restore_snapshot, write_snapshot
    from laser_integrations.stores.qdrant import QdrantStore

__all__ = [
    "DEFAULT_COLLECTION",
    "STORE_KINDS",
    "EdgeStore",
    "Hit",
    "QdrantStore",
    "Store",
    "StoreCapacityError",
    "StoreLockedError",
    "check_capacity",
    "open_store",
    "restore_snapshot",
    "write_snapshot",
]

STORE_KINDS = ("edge", "local", "server")
"""The kinds :func:`open_store` opens."""

DEFAULT_COLLECTION = "laser"
"""The collection name for ``"local"`` and ``"server"`` stores when none is given."""

_EXPORTS = {
    "EdgeStore": "laser_integrations.stores.edge",
    "QdrantStore": "laser_integrations.stores.qdrant",
    "write_snapshot": "laser_integrations.stores.edge_snapshot",
    "restore_snapshot": "laser_integrations.stores.edge_snapshot",
}
__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


def open_store(
    kind: str,
    *,
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    collection: str | None = None,
    api_key: str | None = None,
) -> Store:
    """Open the store ``kind`` names: ``"edge"`` (a folder), ``"local"`` (a folder, else in memory) or ``"server"``.

    Args:
        kind: One of :data:`STORE_KINDS`.
        path: The folder (Edge shard, or local mode).
        url: The Qdrant server's URL (``"server"`` only).
        collection: The collection (``"local"``/``"server"``; Edge has one shard per folder and takes none).
        api_key: The server's API key.

    Raises:
        ValueError: An unknown kind, or arguments that do not fit it.
        StoreLockedError: The folder is open in another process.

    Example:
        >>> open_store("edge")
        Traceback (most recent call last):
        ...
        ValueError: the edge store needs a folder: pass path= (--path DIR)
    """
    if kind not in STORE_KINDS:
        raise ValueError(f"unknown store {kind!r}; choose one of {', '.join(STORE_KINDS)}")
    if kind == "edge":
        if path is None:
            raise ValueError("the edge store needs a folder: pass path= (--path DIR)")
        _refuse(kind, url=url, collection=collection, api_key=api_key)
        from laser_integrations.stores.edge import EdgeStore

        return EdgeStore(path)
    from laser_integrations.qdrant import connect
    from laser_integrations.stores.qdrant import QdrantStore

    if kind == "server":
        if url is None:
            raise ValueError("the server store needs the Qdrant server's address: pass url= (--qdrant-url URL)")
        _refuse(kind, path=path)
        client = connect(url=url, api_key=api_key)
    else:
        _refuse(kind, url=url, api_key=api_key)
        client = connect(path) if path is not None else connect()
        if path is not None:
            _check_local_folder(path)
    return QdrantStore(client, collection or DEFAULT_COLLECTION, owns_client=True)


def _refuse(kind: str, **given: object) -> None:
    extra = [name for name, value in given.items() if value is not None]
    if extra:
        raise ValueError(f"the {kind} store takes no {' or '.join(f'{name}=' for name in extra)}")


def _check_local_folder(path: str | os.PathLike[str]) -> None:
    """Refuse a local-mode folder that is an Edge shard (its files would be mistaken for an empty collection)."""
    if os.path.exists(os.path.join(path, "edge_config.json")):
        raise ValueError(f"{path} is a Qdrant Edge folder; open it with the edge store (--store edge)")
