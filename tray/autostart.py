"""Per-user "start at login" for the tray: the command to start, and this OS's way to do it.

The per-OS parts live in the OS rooms (``agent/osroom``): HKCU Run (Windows), a LaunchAgent
(macOS), XDG autostart (Linux). Installers may also start the tray for every user (HKLM
Run, /Library/LaunchAgents, /etc/xdg/autostart). Each class takes its location as an
argument so tests run against a temporary folder.
"""

from __future__ import annotations

import sys
from pathlib import Path

from agent import osroom
from agent.osroom import Autostart
from agent.osroom.linux import APP_ID, XdgAutostart
from agent.osroom.macos import LAUNCH_AGENT_LABEL, LaunchAgentAutostart
from agent.osroom.windows import RUN_KEY, RUN_VALUE, RegistryRunAutostart

__all__ = ["APP_ID", "LAUNCH_AGENT_LABEL", "RUN_KEY", "RUN_VALUE", "Autostart",
           "LaunchAgentAutostart", "RegistryRunAutostart", "XdgAutostart", "for_this_platform",
           "tray_command"]


def tray_command() -> list[str]:
    """The command that starts this tray: the frozen binary, the console script, or -m."""
    if getattr(sys, "frozen", False):
        return [sys.executable, "tray"]
    script = Path(sys.executable).with_name(
        "thaicard-agent" + osroom.current().executable_suffix)
    if script.exists():
        return [str(script), "tray"]
    return [sys.executable, "-m", "agent", "tray"]


def for_this_platform(command: list[str] | None = None) -> Autostart | None:
    return osroom.current().autostart(command or tray_command())
