"""Linux and the BSDs: XDG autostart, ``/etc/thaicard-agent/policy.json``, X11/Wayland."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .base import Autostart, OsRoom, read_json_object

POLICY_FILE = Path("/etc/thaicard-agent/policy.json")
APP_ID = "thaicard-agent"                       # .desktop name shared with the .deb


class XdgAutostart:
    """``~/.config/autostart/thaicard-agent.desktop``.

    The user file has the same name as the package's ``/etc/xdg/autostart`` entry, so a user
    who turns the toggle off writes ``Hidden=true`` and overrides the system entry, as the XDG
    autostart spec provides.
    """

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


def x11_tray_host_problem() -> str | None:
    """Whether any program owns the X11 system tray selection of the default screen."""
    try:
        import Xlib.display

        display = Xlib.display.Display()
        try:
            atom = display.intern_atom(f"_NET_SYSTEM_TRAY_S{display.get_default_screen()}")
            owner = display.get_selection_owner(atom)
        finally:
            display.close()
    except Exception as exc:  # noqa: BLE001 - Xlib raises its own errors; this is only a diagnostic
        return f"cannot ask the X server for a tray host: {exc}"
    if not owner or getattr(owner, "id", 0) == 0:
        return "no tray host (system tray) is running; the icon appears when one starts"
    return None


class LinuxRoom(OsRoom):
    name = "linux"

    def __init__(self, policy_file: Path = POLICY_FILE) -> None:
        self.policy_file = policy_file

    def read_policy(self) -> tuple[dict[str, Any], str]:
        return read_json_object(self.policy_file), str(self.policy_file)

    def autostart(self, command: list[str]) -> Autostart | None:
        return XdgAutostart(command)

    def display_problem(self, environ: Mapping[str, str]) -> str | None:
        if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
            return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
        return None

    def tray_host_problem(self, environ: Mapping[str, str]) -> str | None:
        # Only pystray's plain X11 backend needs a tray host we can ask about.
        if not environ.get("DISPLAY") or environ.get("PYSTRAY_BACKEND", "xorg") != "xorg":
            return None
        return x11_tray_host_problem()
