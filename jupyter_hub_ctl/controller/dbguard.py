"""Opening a file-backed task store safely: one controller per database, corrupt files set aside."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from typing import Callable, Optional

log = logging.getLogger("jupyter_hub_ctl.controller")


class DatabaseInUse(RuntimeError):
    """Another live controller holds this task database."""


class DBLock:
    """An exclusive advisory lock next to the database (``<db>.<table>.lock``), holding our pid."""

    def __init__(self, db_path: str, table: str):
        self.path = f"{db_path}.{table}.lock"
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise DatabaseInUse(
                f"task database {self.path[:-len('.lock')]} is in use by another controller (pid {holder}); "
                "stop it first, or use another profile, cluster id or --dictdb") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None


def set_aside(path: str) -> str:
    """Rename a damaged database (and its WAL/SHM files) to a new, unused name; return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = f"{path}.corrupt-{stamp}"
    n = 0
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    os.rename(path, target)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.rename(path + suffix, target + suffix)
    return target


def open_guarded(make: Callable, path: str, is_corrupt: Callable[[BaseException], bool]):
    """``make()`` the store; if the file is damaged, set it aside (never overwrite) and try once more."""
    try:
        return make()
    except Exception as e:
        if not os.path.exists(path) or not is_corrupt(e):
            raise
        moved = set_aside(path)
        log.error("task database %s is damaged (%s); moved it to %s and started a new one", path, e, moved)
        return make()
