"""Linux and the BSDs: XDG autostart, ``/etc/thaicard-agent/policy.json``, X11/Wayland."""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import shlex
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .base import (
    Autostart,
    BrowserPolicy,
    OsRoom,
    chromium_policy_origins,
    firefox_policy_origins,
    read_json_object,
)

POLICY_FILE = Path("/etc/thaicard-agent/policy.json")
APP_ID = "thaicard-agent"                       # .desktop name shared with the .deb
SYSLOG_SOCKET = Path("/dev/log")                # journald and rsyslog both listen here

# Browser: (programs that mean it is installed, its managed policy folder under /etc).
CHROMIUM_FAMILY = {
    "Chrome": (("google-chrome", "google-chrome-stable"), "opt/chrome/policies/managed"),
    "Edge": (("microsoft-edge", "microsoft-edge-stable"), "opt/edge/policies/managed"),
    "Chromium": (("chromium", "chromium-browser"), "chromium/policies/managed"),
}
FIREFOX = (("firefox", "firefox-esr"), "firefox/policies/policies.json")
# Where Firefox is installed by Mozilla's tarball, distributions' packages and the snap.
# Each install folder may hold a distribution/policies.json, read only when the system-wide
# file under /etc does not exist (docs/admin.md, "Firefox"): a system has one effective file.
FIREFOX_INSTALL_DIRS = ("usr/lib/firefox", "usr/lib/firefox-esr", "usr/lib64/firefox",
                        "opt/firefox", "snap/firefox")
INSTALLER_STATE_DIR = Path("/var/lib/thaicard-agent")


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def linux_browser_policies(etc: Path = Path("/etc"),
                           which: Callable[[str], str | None] = shutil.which,
                           ) -> list[BrowserPolicy]:
    """Chrome, Edge, Chromium (every JSON file of their managed folder) and Firefox."""
    out = []
    for name, (programs, folder) in CHROMIUM_FAMILY.items():
        directory = etc / folder
        files = sorted(directory.glob("*.json")) if directory.is_dir() else []
        origins: set[str] = set()
        for f in files:
            origins |= chromium_policy_origins(_json_or_empty(f))
        out.append(BrowserPolicy(name, any(which(p) for p in programs), frozenset(origins),
                                 tuple(str(f) for f in files) or (str(directory),)))
    programs, file = FIREFOX
    root = etc.parent
    installed = any(which(p) for p in programs) or any(
        (root / d).is_dir() for d in FIREFOX_INSTALL_DIRS)
    path = firefox_policy_file(etc, which) or etc / file
    out.append(BrowserPolicy("Firefox", installed,
                             frozenset(firefox_policy_origins(_json_or_empty(path))),
                             (str(path),)))
    return out


# Which browser a kiosk PC opens first when several are installed.
KIOSK_ORDER = ("Chrome", "Edge", "Chromium")


def linux_kiosk_browsers(which: Callable[[str], str | None] = shutil.which,
                         ) -> list[tuple[str, str]]:
    out = []
    for name in KIOSK_ORDER:
        found = next((path for path in map(which, CHROMIUM_FAMILY[name][0]) if path), None)
        if found:
            out.append((name, found))
    return out


def firefox_policy_file(etc: Path = Path("/etc"),
                        which: Callable[[str], str | None] = shutil.which) -> Path | None:
    """The one policies.json Firefox reads here: /etc/firefox/policies/policies.json when it
    exists, else an install folder's distribution/policies.json that exists, else (Firefox
    installed, no file yet) the /etc one, which every build reads. None: no Firefox.

    Creating the /etc file while a distribution file exists would hide the admin's
    policies there, so the installers merge into whichever file is in force.
    """
    programs, file = FIREFOX
    system = etc / file
    if system.is_file():
        return system
    root = etc.parent                   # "/" (tests: the tmp folder that holds "etc")
    for folder in FIREFOX_INSTALL_DIRS:
        candidate = root / folder / "distribution" / "policies.json"
        if candidate.is_file():
            return candidate
    if any(which(p) for p in programs) or any((root / d).is_dir() for d in FIREFOX_INSTALL_DIRS):
        return system
    return None


def proc_port_owner(port: int, proc: Path = Path("/proc")) -> str | None:
    """Who listens on 127.0.0.1/0.0.0.0:port: the socket's inode in /proc/net/tcp{,6}, then
    the process holding that inode among its fds (only our own user's are visible)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    if not inodes:
        return None
    wanted = {f"socket:[{i}]" for i in inodes}
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    cmd = (pid_dir / "cmdline").read_bytes().split(b"\0")
                    shown = " ".join(c.decode(errors="replace") for c in cmd[:3] if c)
                    return f"{shown or (pid_dir / 'comm').read_text().strip()} " \
                           f"(pid {pid_dir.name})"
        except OSError:
            continue
    return "a process of another user (run doctor as root to name it)"


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

    def __init__(self, policy_file: Path = POLICY_FILE, etc: Path = Path("/etc"),
                 syslog: Path = SYSLOG_SOCKET) -> None:
        self.policy_file = policy_file
        self.syslog = syslog
        self.etc = etc                  # where browsers' policy folders are (tests: a tmp)

    def read_policy(self) -> tuple[dict[str, Any], str]:
        return read_json_object(self.policy_file), str(self.policy_file)

    def autostart(self, command: list[str]) -> Autostart | None:
        return XdgAutostart(command)

    def browser_policies(self) -> list[BrowserPolicy]:
        return linux_browser_policies(self.etc)

    def kiosk_browsers(self) -> list[tuple[str, str]]:
        return linux_kiosk_browsers()

    def firefox_policy_file(self) -> Path | None:
        return firefox_policy_file(self.etc)

    def installer_state_dir(self) -> Path | None:
        return INSTALLER_STATE_DIR

    def port_owner(self, port: int) -> str | None:
        return proc_port_owner(port)

    def event_log_handler(self) -> logging.Handler | None:
        # The syslog socket reaches journald (or rsyslog); without one there is no OS log.
        if not self.syslog.exists():
            return None
        handler = logging.handlers.SysLogHandler(
            address=str(self.syslog), facility=logging.handlers.SysLogHandler.LOG_USER)
        handler.ident = f"{APP_ID}: "
        return handler

    def display_problem(self, environ: Mapping[str, str]) -> str | None:
        if not environ.get("DISPLAY") and not environ.get("WAYLAND_DISPLAY"):
            return "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
        return None

    def tray_host_problem(self, environ: Mapping[str, str]) -> str | None:
        # Only pystray's plain X11 backend needs a tray host we can ask about.
        if not environ.get("DISPLAY") or environ.get("PYSTRAY_BACKEND", "xorg") != "xorg":
            return None
        return x11_tray_host_problem()
