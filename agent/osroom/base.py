"""What differs between operating systems, as one interface: each OS has its own room.

``agent.osroom.current()`` gives the room of the OS this process runs on; everything else
in ``agent/`` and ``tray/`` asks it instead of testing ``sys.platform``
(``tests/test_platform_boundaries.py`` holds that).
The rooms for other systems still import on any OS, so their pure parts are unit-tested
everywhere with stand-ins for what only exists there (``winreg``, ``msvcrt``).
"""

from __future__ import annotations

import logging
import shutil
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from ..atomic_file import read_json_object as read_json
from ..errors import AgentError


class PolicyInvalid(AgentError):
    """An admin policy that cannot be read: the agent stops rather than guess."""

    code = "config_invalid"


class Autostart(Protocol):
    """Per-user "start at login" of the tray."""

    def enabled(self) -> bool: ...
    def set(self, on: bool) -> None: ...


@dataclass(frozen=True)
class BrowserPolicy:
    """What one browser's admin policies say about reaching the agent (for ``doctor``).

    ``installed``: None when this OS cannot tell. ``origins``: the page origins the
    local-network policies let call loopback; ``where``: the files or keys read.
    """

    browser: str
    installed: bool | None
    origins: frozenset[str]
    where: tuple[str, ...]


# Chromium-family list policies that let a page call 127.0.0.1 (docs/admin.md).
CHROMIUM_LNA_POLICIES = ("LocalNetworkAccessAllowedForUrls", "LoopbackNetworkAllowedForUrls")


def chromium_policy_origins(policy: Mapping[str, Any]) -> set[str]:
    """Origins named by the two Chromium policies in one managed policy object."""
    found: set[str] = set()
    for name in CHROMIUM_LNA_POLICIES:
        value = policy.get(name)
        if isinstance(value, list):
            found.update(str(v).rstrip("/") for v in value)
    return found


def firefox_policy_origins(document: Mapping[str, Any]) -> set[str]:
    """The domains a Firefox ``policies.json`` exempts from its local network access prompt
    (``LocalNetworkAccess`` -> ``SkipDomains``)."""
    policies = document.get("policies")
    lna = policies.get("LocalNetworkAccess") if isinstance(policies, dict) else None
    skip = lna.get("SkipDomains") if isinstance(lna, dict) else None
    return {str(v).rstrip("/") for v in skip} if isinstance(skip, list) else set()


# Policy readers answer (values, where they came from); the settings engine takes it from here.
PolicySource = Callable[[], tuple[dict[str, Any], str]]


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON policy file's object; {} when absent; PolicyInvalid when broken."""
    return read_json(path, PolicyInvalid)


class OsRoom:
    """Defaults shared by the POSIX systems; Windows overrides most of them."""

    name = "other"
    executable_suffix = ""

    # -- admin policy ---------------------------------------------------------------------
    def read_policy(self) -> tuple[dict[str, Any], str]:
        """The machine's admin policy (agent and NHSO keys together) and its location."""
        return {}, "none"

    # -- what the doctor and the support bundle ask ---------------------------------------
    def browser_policies(self) -> list[BrowserPolicy]:
        """Each known browser's local-network policies; [] where this OS has no reader."""
        return []

    def kiosk_browsers(self) -> list[tuple[str, str]]:
        """(name, executable) of the installed Chromium-based browsers, best kiosk first."""
        return []

    def firefox_policy_file(self) -> Path | None:
        """The policies.json this system's Firefox reads, for the installers to merge into;
        None when Firefox is not installed or its policies live elsewhere (the registry)."""
        return None

    def installer_state_dir(self) -> Path | None:
        """Where the installers record what they merged into files they do not own."""
        return None

    def port_owner(self, port: int) -> str | None:
        """The program listening on 127.0.0.1:port ("name (pid N)"), None when unknown."""
        return None

    def event_log_handler(self) -> logging.Handler | None:
        """A handler writing to the OS event log (syslog, Event Log, unified logging)."""
        return None

    def describe(self) -> str:
        """The OS and its version, for the support bundle."""
        import platform

        return platform.platform()

    # -- start at login -------------------------------------------------------------------
    def autostart(self, command: list[str]) -> Autostart | None:
        return None

    # -- single instance ------------------------------------------------------------------
    def lock_exclusive(self, fh: IO[str]) -> None:
        """Lock an open file for this process without waiting; OSError when held elsewhere.

        The OS drops the lock when the process dies, so a crash leaves no stale lock.
        """
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    # -- files ------------------------------------------------------------------------------
    def restrict_to_user(self, path: Path) -> None:
        """Make a new file with personal data readable by this user only."""
        path.chmod(0o600)

    def restrict_folder_to_user(self, path: Path) -> None:
        """A folder of personal data (claims, logs): this user only, even if it existed."""
        path.chmod(0o700)

    def open_folder(self, path: Path, popen: Callable[..., Any]) -> bool:
        """Show a folder in the file manager; False when this system has no way to."""
        opener = self.folder_opener()
        if opener and shutil.which(opener):
            popen([opener, str(path)])
            return True
        return False

    def folder_opener(self) -> str | None:
        return "xdg-open"

    def clipboard_commands(self) -> list[list[str]]:
        """Programs that take text on stdin into the clipboard, in the order to try them."""
        return [["wl-copy"], ["xclip", "-selection", "clipboard"],
                ["xsel", "--clipboard", "--input"]]

    # -- the listening socket -------------------------------------------------------------
    def set_listen_options(self, sock: socket.socket) -> None:
        """On POSIX, SO_REUSEADDR only skips TIME_WAIT and never allows two listeners."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)

    def open_files_limit(self) -> int:
        """How many descriptors this process may hold (sockets included)."""
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        return soft if soft != resource.RLIM_INFINITY else 1 << 16

    # -- the tray ---------------------------------------------------------------------------
    def display_problem(self, environ: Mapping[str, str]) -> str | None:
        """Why no tray icon can be shown in this session, or None when one may be."""
        return None

    def tray_host_problem(self, environ: Mapping[str, str]) -> str | None:
        """Whether a program is there to show tray icons; None when fine or unknown."""
        return None

    def ui_language(self) -> str | None:
        """The OS's own UI language (``th``/``en``) where the OS says it; None: use locale."""
        return None
