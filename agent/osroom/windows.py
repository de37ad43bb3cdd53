"""Windows: the registry (policy, start at login), msvcrt locks, exclusive port binding.

``winreg``, ``msvcrt`` and ``ctypes.windll`` exist only on Windows: they are imported when
first used, and the registry can be handed in, so the tests run this room on Linux with a
stand-in that has the same calls.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import logging.handlers
import os
import socket
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

from .base import CHROMIUM_LNA_POLICIES, Autostart, BrowserPolicy, OsRoom

POLICY_KEY = r"Software\Policies\ThaiCardAgent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
RUN_VALUE = "ThaiCardAgent"
# Browser: (its policy key under HKLM, its executable for "is it installed").
BROWSER_KEYS = {
    "Chrome": (r"Software\Policies\Google\Chrome", "chrome.exe"),
    "Edge": (r"Software\Policies\Microsoft\Edge", "msedge.exe"),
    "Chromium": (r"Software\Policies\Chromium", "chromium.exe"),
}
FIREFOX_LNA_KEY = r"Software\Policies\Mozilla\Firefox\LocalNetworkAccess\SkipDomains"
APP_PATHS = r"Software\Microsoft\Windows\CurrentVersion\App Paths"
LANG_THAI = 0x1E                   # primary language id of Thai in a LANGID


def _winreg() -> Any:
    import winreg

    return winreg


def read_registry_policy(registry: Any = None) -> dict[str, Any]:
    """Every value under ``HKLM\\Software\\Policies\\ThaiCardAgent``, by value name."""
    return dict(_values(registry or _winreg(), POLICY_KEY))


def _values(reg: Any, path: str) -> list[tuple[str, Any]]:
    """(name, data) of every value under ``HKLM\\path``; none when the key is absent."""
    found: list[tuple[str, Any]] = []
    try:
        key = reg.OpenKey(reg.HKEY_LOCAL_MACHINE, path)
    except OSError:
        return found
    with key:
        index = 0
        while True:
            try:
                name, value, _kind = reg.EnumValue(key, index)
            except OSError:
                break
            found.append((name, value))
            index += 1
    return found


def _list_values(reg: Any, path: str) -> set[str]:
    """The data of every value of a list-policy key (values named 1, 2, ..., 8189001)."""
    return {str(value).rstrip("/") for _name, value in _values(reg, path)}


def _installed(reg: Any, exe: str) -> bool:
    try:
        reg.OpenKey(reg.HKEY_LOCAL_MACHINE, APP_PATHS + "\\" + exe).Close()
    except OSError:
        return False
    return True


def registry_browser_policies(registry: Any = None) -> list[BrowserPolicy]:
    reg = registry or _winreg()
    out = []
    for name, (key, exe) in BROWSER_KEYS.items():
        origins: set[str] = set()
        for policy in CHROMIUM_LNA_POLICIES:
            origins |= _list_values(reg, f"{key}\\{policy}")
        out.append(BrowserPolicy(name, _installed(reg, exe), frozenset(origins),
                                 (f"HKLM\\{key}",)))
    out.append(BrowserPolicy("Firefox", _installed(reg, "firefox.exe"),
                             frozenset(firefox_registry_list(reg, FIREFOX_LNA_KEY)),
                             (f"HKLM\\{FIREFOX_LNA_KEY}",)))
    return out


# Edge first: every Windows 10/11 PC has it, and it has its own kiosk mode.
KIOSK_ORDER = ("Edge", "Chrome", "Chromium")


def registry_kiosk_browsers(registry: Any = None) -> list[tuple[str, str]]:
    """Where each browser's executable is, from its App Paths entry (its default value)."""
    reg = registry or _winreg()
    out = []
    for name in KIOSK_ORDER:
        exe = BROWSER_KEYS[name][1]
        try:
            path = reg.QueryValue(reg.HKEY_LOCAL_MACHINE, APP_PATHS + "\\" + exe)
        except OSError:
            continue
        if path:
            out.append((name, str(path).strip('"')))
    return out


def firefox_registry_list(reg: Any, path: str) -> list[str]:
    """A registry list as Firefox reads it: a list only when its first value is named "1";
    otherwise Firefox takes an object and rejects the policy, so nothing is listed."""
    values = _values(reg, path)
    if not values or values[0][0] != "1":
        return []
    return [str(value).rstrip("/") for _name, value in values]


def netstat_port_owner(port: int, run: Callable[..., Any] = subprocess.run) -> str | None:
    """``netstat -ano`` names the listening pid; ``tasklist`` its image (the NHSO agent's)."""
    try:
        out = run(["netstat", "-ano", "-p", "TCP"], capture_output=True, text=True,
                  timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[3] == "LISTENING" and parts[1].endswith(f":{port}"):
            pid = parts[4]
            try:
                task = run(["tasklist", "/FI", f"PID eq {pid}", "/FO", "CSV", "/NH"],
                           capture_output=True, text=True, timeout=10).stdout
                image = task.split(",")[0].strip('"') or "?"
            except (OSError, subprocess.SubprocessError):
                image = "?"
            return f"{image} (pid {pid})"
    return None


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

    def browser_policies(self) -> list[BrowserPolicy]:
        return registry_browser_policies(self._registry)

    def kiosk_browsers(self) -> list[tuple[str, str]]:
        return registry_kiosk_browsers(self._registry)

    def port_owner(self, port: int) -> str | None:
        return netstat_port_owner(port)

    def event_log_handler(self) -> logging.Handler | None:
        # The standard handler needs pywin32 (without it, it prints to stdout and drops
        # every record): ask first; without it the log file is the only record.
        if importlib.util.find_spec("win32evtlogutil") is None:
            return None
        try:
            return logging.handlers.NTEventLogHandler("Thai Card Agent")
        except OSError:                 # registering the source needs rights once
            return None

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
