"""The per-OS rooms, each run here on Linux: what only exists on Windows is a stand-in."""

from __future__ import annotations

import os
import plistlib
import socket
import stat
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from agent import osroom
from agent.osroom import LinuxRoom, MacRoom, OsRoom, WindowsRoom, for_platform, linux
from agent.osroom.linux import XdgAutostart
from agent.osroom.macos import LaunchAgentAutostart
from agent.osroom.windows import RegistryRunAutostart
from tray import cli as tray_cli
from tray import i18n

X11_SESSION = {"DISPLAY": ":0", "PYSTRAY_BACKEND": "xorg"}


class RecordingSocket:
    def __init__(self) -> None:
        self.options: list[tuple[int, int, int]] = []

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self.options.append((level, option, value))


def test_each_platform_gets_its_room() -> None:
    assert isinstance(for_platform("win32"), WindowsRoom)
    assert isinstance(for_platform("darwin"), MacRoom)
    assert isinstance(for_platform("linux"), LinuxRoom)
    assert isinstance(for_platform("freebsd14"), LinuxRoom)
    other = for_platform("sunos5")
    assert type(other) is OsRoom and other.autostart(["x"]) is None
    assert osroom.current() is osroom.current()          # one room per process


# -- Windows ---------------------------------------------------------------------------------
def test_windows_never_asks_x11_for_a_tray_host_even_with_display_set(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in the field: an X server for WSL/Cygwin sets DISPLAY on a Windows PC."""
    asked: list[str] = []
    monkeypatch.setattr(linux, "x11_tray_host_problem", lambda: asked.append("x") or "none")
    room = WindowsRoom(registry=types.SimpleNamespace())
    assert room.display_problem(X11_SESSION) is None
    assert room.tray_host_problem(X11_SESSION) is None
    monkeypatch.setattr(osroom, "current", lambda: room)
    for name, value in X11_SESSION.items():
        monkeypatch.setenv(name, value)
    assert tray_cli.display_problem() is None and tray_cli.tray_host_problem() is None
    assert asked == []


def test_linux_asks_x11_only_on_plain_x11(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []
    monkeypatch.setattr(linux, "x11_tray_host_problem", lambda: asked.append("x") or "no host")
    room = LinuxRoom()
    assert room.display_problem({}) == "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    assert room.display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None
    assert room.tray_host_problem({"DISPLAY": ":0", "PYSTRAY_BACKEND": "gtk"}) is None
    assert room.tray_host_problem({}) is None
    assert room.tray_host_problem(X11_SESSION) == "no host" and asked == ["x"]


def test_windows_listening_socket_is_exclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)
    sock = RecordingSocket()
    WindowsRoom(registry=object()).set_listen_options(sock)
    assert sock.options == [(socket.SOL_SOCKET, -5, 1)]      # and never SO_REUSEADDR
    sock = RecordingSocket()
    LinuxRoom().set_listen_options(sock)
    assert sock.options == [(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)]


def test_windows_lock_uses_msvcrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[int, int, int]] = []

    def locking(fd: int, mode: int, size: int) -> None:
        if calls:
            raise OSError("locked")
        calls.append((fd, mode, size))

    monkeypatch.setitem(sys.modules, "msvcrt",
                        types.SimpleNamespace(LK_NBLCK=2, locking=locking))
    room = WindowsRoom(registry=object())
    with open(tmp_path / "tray.lock", "a+", encoding="ascii") as fh:
        room.lock_exclusive(fh)
        assert calls == [(fh.fileno(), 2, 1)]
        with pytest.raises(OSError):
            room.lock_exclusive(fh)


def test_windows_policy_autostart_folder_clipboard(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    values = [("Port", 8191, 4), ("nhsoHcode", "10699", 1)]

    class Key:
        def __enter__(self) -> Key:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    def enum_value(_key: Any, index: int) -> tuple[str, Any, int]:
        if index >= len(values):
            raise OSError("no more data")
        return values[index]

    registry = types.SimpleNamespace(HKEY_LOCAL_MACHINE="HKLM", HKEY_CURRENT_USER="HKCU",
                                     OpenKey=lambda root, path: Key(), EnumValue=enum_value)
    room = WindowsRoom(registry=registry)
    assert room.read_policy() == ({"Port": 8191, "nhsoHcode": "10699"},
                                  r"HKLM\Software\Policies\ThaiCardAgent")
    auto = room.autostart(["thaicard-agent.exe", "tray"])
    assert isinstance(auto, RegistryRunAutostart) and auto.reg is registry
    assert room.clipboard_commands() == [["clip"]] and room.executable_suffix == ".exe"

    opened: list[Path] = []
    monkeypatch.setattr(os, "startfile", opened.append, raising=False)
    assert room.open_folder(tmp_path, popen=None) is True and opened == [tmp_path]
    monkeypatch.delattr(os, "startfile")
    assert room.open_folder(tmp_path, popen=None) is False
    room.restrict_to_user(tmp_path)                 # the profile's ACLs do it: no error


def test_windows_ui_language_decides_before_the_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osroom, "current", lambda: types.SimpleNamespace(ui_language=lambda: "th"))
    monkeypatch.setenv("LANG", "en_US.UTF-8")
    assert i18n.system_language() == "th"
    assert i18n.system_language({"LANG": "en_US.UTF-8"}) == "en"   # a given environ wins
    # Off Windows there is no such call: the locale variables decide.
    assert WindowsRoom(registry=object()).ui_language() is None    # no ctypes.windll here
    assert LinuxRoom().ui_language() is None


# -- macOS -------------------------------------------------------------------------------------
def test_macos_room(tmp_path: Path) -> None:
    plist = tmp_path / "policy.plist"
    plist.write_bytes(plistlib.dumps({"port": 8190, "PayloadUUID": "x", "nhsoZone": "test"}))
    room = MacRoom(plist)
    assert room.read_policy() == ({"port": 8190, "nhsoZone": "test"}, str(plist))
    assert isinstance(room.autostart(["x", "tray"]), LaunchAgentAutostart)
    assert room.clipboard_commands() == [["pbcopy"]] and room.folder_opener() == "open"


# -- Linux -------------------------------------------------------------------------------------
def test_linux_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    room = LinuxRoom(tmp_path / "absent.json")
    assert room.read_policy() == ({}, str(tmp_path / "absent.json"))
    assert isinstance(room.autostart(["x", "tray"]), XdgAutostart)
    secret = tmp_path / "outbox.sqlite3"
    secret.write_text("")
    secret.chmod(0o644)
    room.restrict_to_user(secret)
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    started: list[list[str]] = []
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    assert room.open_folder(tmp_path, started.append) is True
    assert started == [["xdg-open", str(tmp_path)]]
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert room.open_folder(tmp_path, started.append) is False
