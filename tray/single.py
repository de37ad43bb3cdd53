"""One tray per user session: a lock file held for the life of the process.

The OS drops the lock when the process dies, so a crash never leaves a stale lock behind.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from agent import osroom, paths


def default_lock_path() -> Path:
    return paths.tray_lock_file()


class AlreadyRunning(Exception):
    pass


class InstanceLock:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_lock_path()
        self._fh: IO[str] | None = None

    def acquire(self) -> InstanceLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+", encoding="ascii")  # noqa: SIM115 - held until release()
        try:
            osroom.current().lock_exclusive(fh)
        except OSError:
            fh.close()
            raise AlreadyRunning(str(self.path)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> InstanceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
