"""Windows: the registry (policy, start at login), msvcrt locks, exclusive port binding.

``winreg``, ``msvcrt`` and ``ctypes.windll`` exist only on Windows: they are imported when
first used, and the registry can be handed in, so the tests run this room on Linux with a
stand-in that has the same calls.
"""

from __future__ import annotations

import importlib
import os
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from .base import Autostart, OsRoom

POLICY_KEY = r"Software\Policies\ThaiCardAgent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "ThaiCardAgent"
LANG_THAI = 0x1E                   # primary language id of Thai in a LANGID


def _winreg() -> Any:
    import winreg

    return winreg


def read_registry_policy(registry: Any = None) -> dict[str, Any]:
    """Every value under ``HKLM\\Software\\Policies\\ThaiCardAgent``, by value name."""
    reg = registry or _winreg()
    values: dict[str, Any] = {}
    try:
        key = reg.OpenKey(reg.HKEY_LOCAL_MACHINE, POLICY_KEY)
    except OSError:
        return values
    with key:
        index = 0
        while True:
            try:
                name, value, _kind = reg.EnumValue(key, index)
            except OSError:
                break
            values[name] = value
            index += 1
    return values


class RegistryRunAutostart:
    """``HKCU\\...\\Run``; ``registry`` is ``winreg`` (a stand-in with the same calls in tests)."""

    def __init__(self, command: list[str], registry: Any = None) -> None:
        self.command = command
        self.reg = registry or _winreg()

    def enabled(self) -> bool:
        reg = self.reg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
                value, _ = reg.QueryValueEx(key, RUN_VALUE)
        except OSError:
            return False
        return bool(value)

    def set(self, on: bool) -> None:
        reg = self.reg
        with reg.CreateKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:
            if on:
                reg.SetValueEx(key, RUN_VALUE, 0, reg.REG_SZ, subprocess.list2cmdline(self.command))
            else:
                try:
                    reg.DeleteValue(key, RUN_VALUE)
                except FileNotFoundError:
                    pass


class WindowsRoom(OsRoom):
    name = "windows"
    executable_suffix = ".exe"

    def __init__(self, registry: Any = None) -> None:
        self._registry = registry

    def read_policy(self) -> tuple[dict[str, Any], str]:
        return read_registry_policy(self._registry), "HKLM\\" + POLICY_KEY

    def autostart(self, command: list[str]) -> Autostart | None:
        return RegistryRunAutostart(command, self._registry)

    def lock_exclusive(self, fh: IO[str]) -> None:
        # By name: type checkers on other systems see no msvcrt module.
        msvcrt: Any = importlib.import_module("msvcrt")
        fh.seek(0)
        msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)

    def restrict_to_user(self, path: Path) -> None:
        """Nothing to do: the user's profile folders are already private by their ACLs."""

    def restrict_folder_to_user(self, path: Path) -> None:
        """Nothing to do: the folders live in the user's profile, private by its ACLs."""

    def open_folder(self, path: Path, popen: Callable[..., Any]) -> bool:
        startfile = getattr(os, "startfile", None)     # only on Windows
        if startfile is None:
            return False
        startfile(path)
        return True

    def clipboard_commands(self) -> list[list[str]]:
        return [["clip"]]

    def set_listen_options(self, sock: socket.socket) -> None:
        """SO_EXCLUSIVEADDRUSE, never SO_REUSEADDR: on Windows that would let a second
        process take the port, and the port is the agent's single-instance lock."""
        option = getattr(socket, "SO_EXCLUSIVEADDRUSE", None)
        if option is not None:
            sock.setsockopt(socket.SOL_SOCKET, option, 1)

    def open_files_limit(self) -> int:
        """Windows has no small per-process socket limit (handles are counted in millions)."""
        return 1 << 16

    def display_problem(self, environ: Mapping[str, str]) -> str | None:
        return None          # every Windows session has a desktop and a notification area

    def tray_host_problem(self, environ: Mapping[str, str]) -> str | None:
        # No X11 check here even when DISPLAY is set (an X server for WSL or Cygwin): the
        # notification area is always there, and asking X about it made no sense.
        return None

    def ui_language(self) -> str | None:
        try:
            import ctypes

            lang_id = ctypes.windll.kernel32.GetUserDefaultUILanguage()  # type: ignore[attr-defined]  # Windows-only ctypes
        except (AttributeError, OSError):
            return None
        return "th" if lang_id & 0x3FF == LANG_THAI else "en"
