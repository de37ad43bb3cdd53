"""The per-OS rooms: ``current()`` is the one for the OS this process runs on.

This package is the only place in ``agent/`` and ``tray/`` that asks which OS it is on
(``tests/test_platform_boundaries.py`` holds that).
"""

from __future__ import annotations

import functools
import sys

from .base import Autostart, BrowserPolicy, OsRoom, PolicyInvalid, PolicySource
from .linux import LinuxRoom
from .macos import MacRoom
from .windows import WindowsRoom

__all__ = ["Autostart", "BrowserPolicy", "LinuxRoom", "MacRoom", "OsRoom", "PolicyInvalid",
           "PolicySource", "WindowsRoom", "current", "for_platform"]


def for_platform(platform: str) -> OsRoom:
    """The room for a ``sys.platform`` value; a plain POSIX room for unknown systems."""
    if platform == "win32":
        return WindowsRoom()
    if platform == "darwin":
        return MacRoom()
    if platform.startswith("linux") or "bsd" in platform:
        return LinuxRoom()
    return OsRoom()


@functools.cache
def current() -> OsRoom:
    return for_platform(sys.platform)
