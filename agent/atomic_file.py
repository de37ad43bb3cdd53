"""Writing a settings file so that a reader sees the old file or the new one, never half.

Every settings and preferences writer (agent config from the tray, NHSO settings, tray
preferences) goes through ``write_atomic``: a crash or a full disk mid-write must not
leave a truncated JSON file that stops the agent at its next start.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Settings that may hold personal data (the recorder's citizen id in nhso.json): this user only.
PRIVATE = 0o600
# Settings with nothing personal in them (port, origins, language).
SHARED = 0o644


def write_atomic(path: Path, text: str, *, mode: int = PRIVATE,
                 check: Callable[[Path], None] | None = None) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one step.

    The temporary file sits in the same folder, so ``os.replace`` is a rename within one
    file system. ``check`` is called with the temporary file before the rename: when it
    raises, the temporary file is removed and ``path`` is left as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        if check is not None:
            check(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable where the OS allows opening a folder (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return                              # Windows: folders cannot be opened this way
    with contextlib.suppress(OSError):
        os.fsync(fd)
    os.close(fd)


def read_json_object(path: Path, error: Callable[[str], Exception]) -> dict[str, Any]:
    """A settings or policy file's JSON object: {} when absent, ``error(why)`` raised when it
    cannot be read or holds something else (the one reader of the files written above)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise error(f"{path} must hold a JSON object")
    return data
