"""macOS: a per-user LaunchAgent, managed preferences from a configuration profile."""

from __future__ import annotations

import json
import logging
import logging.handlers
import plistlib
import subprocess
from pathlib import Path
from typing import Any

from .base import (
    Autostart,
    BrowserPolicy,
    OsRoom,
    PolicyInvalid,
    chromium_policy_origins,
    firefox_policy_origins,
)

POLICY_FILE = Path("/Library/Managed Preferences/th.thaicard.agent.plist")
LAUNCH_AGENT_LABEL = "th.thaicard.agent.tray"
MANAGED = Path("/Library/Managed Preferences")
# Browser: (its app bundle, its managed preferences domain).
BROWSERS = {"Chrome": ("Google Chrome.app", "com.google.Chrome"),
            "Edge": ("Microsoft Edge.app", "com.microsoft.Edge"),
            "Chromium": ("Chromium.app", "org.chromium.Chromium"),
            "Firefox": ("Firefox.app", "org.mozilla.firefox")}
SYSLOG_SOCKET = Path("/var/run/syslog")     # unified logging takes syslog messages here
# Where Mozilla documents policies.json on macOS (docs/reference.md); the pkg merges into it.
FIREFOX_DISTRIBUTION = Path("Firefox.app/Contents/Resources/distribution/policies.json")
INSTALLER_STATE_DIR = Path("/Library/Application Support/thaicard-agent")


def mac_browser_policies(managed: Path = MANAGED,
                         apps: Path = Path("/Applications")) -> list[BrowserPolicy]:
    out = []
    for name, (app, domain) in BROWSERS.items():
        path = managed / f"{domain}.plist"
        try:
            with path.open("rb") as fh:
                data = plistlib.load(fh)
        except (OSError, plistlib.InvalidFileException, ValueError):
            data = {}
        data = data if isinstance(data, dict) else {}
        where = [str(path)]
        if name != "Firefox":
            origins = chromium_policy_origins(data)
        elif "LocalNetworkAccess" in data:
            # Firefox takes a policy from the profile over the same one in policies.json.
            origins = firefox_policy_origins({"policies": data})
        else:
            json_file = apps / FIREFOX_DISTRIBUTION
            origins = firefox_policy_origins(_json_or_empty(json_file))
            where.append(str(json_file))
        out.append(BrowserPolicy(name, (apps / app).exists(), frozenset(origins), tuple(where)))
    return out


KIOSK_ORDER = ("Chrome", "Edge", "Chromium")


def mac_kiosk_browsers(apps: Path = Path("/Applications")) -> list[tuple[str, str]]:
    """The executable inside each installed browser's bundle."""
    out = []
    for name in KIOSK_ORDER:
        bundle = BROWSERS[name][0]
        exe = apps / bundle / "Contents" / "MacOS" / bundle.removesuffix(".app")
        if exe.exists():
            out.append((name, str(exe)))
    return out


def _json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_managed_preferences(path: Path = POLICY_FILE) -> dict[str, Any]:
    """The policy domain ``th.thaicard.agent`` as an MDM profile deploys it."""
    try:
        with path.open("rb") as fh:
            data = plistlib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, plistlib.InvalidFileException, ValueError) as exc:
        raise PolicyInvalid(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        return {}
    # Some MDMs copy the profile's own Payload* keys into the managed preferences.
    return {k: v for k, v in data.items() if not k.startswith("Payload")}


class LaunchAgentAutostart:
    """``~/Library/LaunchAgents/th.thaicard.agent.tray.plist``."""

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


class MacRoom(OsRoom):
    name = "macos"

    def __init__(self, policy_file: Path = POLICY_FILE) -> None:
        self.policy_file = policy_file

    def read_policy(self) -> tuple[dict[str, Any], str]:
        return read_managed_preferences(self.policy_file), str(self.policy_file)

    def autostart(self, command: list[str]) -> Autostart | None:
        return LaunchAgentAutostart(command)

    def folder_opener(self) -> str | None:
        return "open"

    def browser_policies(self) -> list[BrowserPolicy]:
        return mac_browser_policies()

    def kiosk_browsers(self) -> list[tuple[str, str]]:
        return mac_kiosk_browsers()

    def firefox_policy_file(self) -> Path | None:
        app = Path("/Applications") / FIREFOX_DISTRIBUTION
        return app if app.parents[3].is_dir() else None      # Firefox.app is there

    def installer_state_dir(self) -> Path | None:
        return INSTALLER_STATE_DIR

    def port_owner(self, port: int) -> str | None:
        try:
            out = subprocess.run(["lsof", "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"],
                                 capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        fields = {line[:1]: line[1:] for line in out.splitlines() if line}
        return f"{fields['c']} (pid {fields['p']})" if "p" in fields and "c" in fields else None

    def event_log_handler(self) -> logging.Handler | None:
        if not SYSLOG_SOCKET.exists():
            return None
        handler = logging.handlers.SysLogHandler(address=str(SYSLOG_SOCKET))
        handler.ident = "thaicard-agent: "
        return handler

    def clipboard_commands(self) -> list[list[str]]:
        return [["pbcopy"]]
