"""Per-user "start at login": HKCU Run (Windows), a LaunchAgent (macOS), XDG autostart (Linux).

Installers may also start the tray for every user (HKLM Run, /Library/LaunchAgents,
/etc/xdg/autostart). On Linux the user file has the same name as the system one, so a
user who turns the toggle off writes ``Hidden=true`` and overrides the system entry, as
the XDG autostart spec provides. Each class takes its location as an argument so tests
run against a temporary folder.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import sys
from pathlib import Path
from typing import Protocol

APP_ID = "thaicard-agent"                       # .desktop name shared with the .deb
LAUNCH_AGENT_LABEL = "th.thaicard.agent.tray"
RUN_VALUE = "ThaiCardAgent"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"


def tray_command() -> list[str]:
    """The command that starts this tray: the frozen binary, the console script, or -m."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray"]
    script = Path(sys.executable).with_name(
        "thaicard-agent.exe" if sys.platform == "win32" else "thaicard-agent")
    if script.exists():
        return [str(script), "tray"]
    return [sys.executable, "-m", "agent", "tray"]


class Autostart(Protocol):
    def enabled(self) -> bool: ...
    def set(self, on: bool) -> None: ...


class XdgAutostart:
    def __init__(self, command: list[str], config_home: Path | None = None,
                 config_dirs: list[Path] | None = None) -> None:
        self.command = command
        home = config_home or Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
        dirs = config_dirs if config_dirs is not None else [
            Path(p) for p in (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":") if p]
        self.user_file = home / "autostart" / f"{APP_ID}.desktop"
        self.system_files = [d / "autostart" / f"{APP_ID}.desktop" for d in dirs]

    def enabled(self) -> bool:
        if self.user_file.exists():
            return not _desktop_hidden(self.user_file)
        return any(f.exists() and not _desktop_hidden(f) for f in self.system_files)

    def set(self, on: bool) -> None:
        self.user_file.parent.mkdir(parents=True, exist_ok=True)
        if on:
            body = (f"Exec={shlex.join(self.command)}\n"
                    "X-GNOME-Autostart-enabled=true\n")
        else:
            body = "Hidden=true\nX-GNOME-Autostart-enabled=false\n"
        self.user_file.write_text(
            "[Desktop Entry]\nType=Application\nName=Thai Card Agent\n"
            "Comment=Thai national ID card reader for web pages\n"
            "Icon=thaicard-agent\nTerminal=false\n" + body, encoding="utf-8")


def _desktop_hidden(path: Path) -> bool:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return True
    values = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    return (values.get("Hidden", "").strip().lower() == "true"
            or values.get("X-GNOME-Autostart-enabled", "").strip().lower() == "false")


class LaunchAgentAutostart:
    def __init__(self, command: list[str], agents_dir: Path | None = None) -> None:
        self.command = command
        self.file = (agents_dir or Path.home() / "Library" / "LaunchAgents") / \
            f"{LAUNCH_AGENT_LABEL}.plist"

    def enabled(self) -> bool:
        try:
            with self.file.open("rb") as fh:
                data = plistlib.load(fh)
        except (OSError, plistlib.InvalidFileException):
            return False
        return bool(data.get("RunAtLoad")) and not data.get("Disabled", False)

    def set(self, on: bool) -> None:
        if not on:
            self.file.unlink(missing_ok=True)
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        with self.file.open("wb") as fh:
            plistlib.dump({"Label": LAUNCH_AGENT_LABEL, "ProgramArguments": self.command,
                           "RunAtLoad": True, "LimitLoadToSessionType": "Aqua",
                           "ProcessType": "Interactive"}, fh)


class RegistryRunAutostart:
    """HKCU\\...\\Run; ``registry`` is ``winreg`` (a stand-in with the same calls in tests)."""

    def __init__(self, command: list[str], registry: object | None = None) -> None:
        self.command = command
        if registry is None:
            import winreg as registry  # type: ignore[import-not-found,no-redef]
        self.reg = registry

    def enabled(self) -> bool:
        reg = self.reg
        try:
            with reg.OpenKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:  # type: ignore[attr-defined]
                value, _ = reg.QueryValueEx(key, RUN_VALUE)  # type: ignore[attr-defined]
        except OSError:
            return False
        return bool(value)

    def set(self, on: bool) -> None:
        reg = self.reg
        with reg.CreateKey(reg.HKEY_CURRENT_USER, RUN_KEY) as key:  # type: ignore[attr-defined]
            if on:
                reg.SetValueEx(key, RUN_VALUE, 0, reg.REG_SZ,  # type: ignore[attr-defined]
                               _windows_cmdline(self.command))
            else:
                try:
                    reg.DeleteValue(key, RUN_VALUE)  # type: ignore[attr-defined]
                except FileNotFoundError:
                    pass


def _windows_cmdline(args: list[str]) -> str:
    import subprocess

    return subprocess.list2cmdline(args)


def for_this_platform(command: list[str] | None = None) -> Autostart | None:
    cmd = command or tray_command()
    if sys.platform == "win32":
        return RegistryRunAutostart(cmd)
    if sys.platform == "darwin":
        return LaunchAgentAutostart(cmd)
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        return XdgAutostart(cmd)
    return None
