"""One process at a time on a store folder: an OS file lock, taken before anything is loaded.

``flock`` locks belong to an open file, so a second open in the same process is refused as well, and the
kernel drops the lock when the holder dies (a SIGKILLed indexer leaves no stale lock behind).

>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> first = FolderLock.acquire(folder, "Edge folder")
>>> FolderLock.acquire(folder, "Edge folder")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
laser_integrations.stores.base.StoreLockedError: Edge folder ... is open in another process (pid ...); ...
>>> first.release()
>>> FolderLock.acquire(folder, "Edge folder").release()
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from laser_integrations.stores.base import StoreLockedError

__all__ = ["LOCK_FILE", "FolderLock"]

LOCK_FILE = ".laser.lock"
"""The lock file inside a store folder; it holds the pid of the process that has the folder open."""


class FolderLock:
    """An exclusive lock on ``folder`` held through :data:`LOCK_FILE`; :meth:`release` gives it back."""

    def __init__(self, handle: int, path: Path) -> None:
        self._handle: int | None = handle
        self.path = path

    @classmethod
    def acquire(cls, folder: str | os.PathLike[str], what: str) -> FolderLock:
        """Lock ``folder`` (created if missing) or raise :class:`StoreLockedError` at once, naming ``what``."""
        path = Path(folder) / LOCK_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(handle, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(handle)
            raise StoreLockedError(
                f"{what} {path.parent} is open in another process (pid {holder}); close it (stop that "
                "indexer, server or notebook) or use another folder"
            ) from None
        os.ftruncate(handle, 0)
        os.pwrite(handle, str(os.getpid()).encode(), 0)
        return cls(handle, path)

    def release(self) -> None:
        """Unlock; idempotent."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None
