"""Our entries in Firefox's one ``policies.json``: merged in by the installers, taken out again.

Firefox reads a single ``policies.json`` (docs/admin.md, "Firefox"), and the hospital may
keep its own policies in it. ``add`` puts the allowed pages' host names into
``policies`` -> ``LocalNetworkAccess`` -> ``SkipDomains`` (the key Mozilla documents,
docs/reference.md) and records in a state file exactly what it added or created;
``remove`` takes out only that, so the admin's other policies and their own skip domains
stay as they were. A file that is not JSON, or not the shape Mozilla documents, is left
untouched and the command says so: guessing inside an admin's file is worse than a prompt.

The deb's maintainer scripts and the macOS pkg run it through the frozen binary
(``thaicard-agent firefox-policy add|remove``); the MSI writes the registry form itself.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .atomic_file import SHARED, write_atomic
from .errors import AgentError

# The agent's own pages are loopback: Firefox never asks about them.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class PolicyFileInvalid(AgentError):
    """The admin's policies.json cannot be merged safely: it is left as it was."""

    code = "config_invalid"


@dataclass
class Change:
    """What ``add`` did to one file, kept so that ``remove`` undoes exactly that."""

    file: str
    added: list[str] = field(default_factory=list)
    # Which of "policies", "LocalNetworkAccess", "SkipDomains" did not exist before.
    created_keys: list[str] = field(default_factory=list)
    created_file: bool = False
    created_dirs: list[str] = field(default_factory=list)   # deepest last


def skip_domains(origins: list[str]) -> list[str]:
    """The host names of the allowed pages (``SkipDomains`` lists hosts, not origins)."""
    hosts: list[str] = []
    for origin in origins:
        host = urlsplit(origin).hostname if "://" in origin else origin.strip().lower()
        if host and host not in LOOPBACK_HOSTS and host not in hosts:
            hosts.append(host)
    return hosts


def _invalid(path: Path, why: str) -> PolicyFileInvalid:
    return PolicyFileInvalid(f"{path}: {why}; left unchanged / ไม่ได้แก้ไขไฟล์นี้")


def _load(path: Path) -> dict[str, Any] | None:
    """The document, None when there is no file; PolicyFileInvalid when we must not touch it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(path, f"cannot be read ({exc})") from None
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise _invalid(path, f"is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise _invalid(path, "does not hold a JSON object")
    policies = doc.get("policies", {})
    if not isinstance(policies, dict):
        raise _invalid(path, '"policies" is not an object')
    lna = policies.get("LocalNetworkAccess", {})
    if not isinstance(lna, dict):
        raise _invalid(path, '"LocalNetworkAccess" is not an object')
    skip = lna.get("SkipDomains", [])
    if not isinstance(skip, list):
        raise _invalid(path, '"SkipDomains" is not a list')
    return doc


def _write(path: Path, doc: dict[str, Any]) -> None:
    mode = path.stat().st_mode & 0o777 if path.exists() else SHARED
    write_atomic(path, json.dumps(doc, ensure_ascii=False, indent=2) + "\n", mode=mode)


def _read_state(state: Path) -> Change | None:
    try:
        data = json.loads(state.read_text(encoding="utf-8"))
        return Change(**data)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:
        raise PolicyFileInvalid(f"{state}: {exc}") from None


def add(file: Path, domains: list[str], state: Path) -> Change:
    """Merge ``domains`` into ``file``'s SkipDomains; record the change in ``state``.

    A change recorded earlier (a reinstall, an upgrade whose old scripts did not undo it)
    is undone first, so that running ``add`` twice leaves one set of our entries.
    """
    remove(state)
    doc = _load(file)
    change = Change(file=str(file))
    if doc is None:
        doc = {}
        change.created_file = True
        missing = []
        parent = file.parent
        while not parent.exists():
            missing.append(str(parent))
            parent = parent.parent
        change.created_dirs = list(reversed(missing))
    if "policies" not in doc:
        change.created_keys.append("policies")
    policies = doc.setdefault("policies", {})
    if "LocalNetworkAccess" not in policies:
        change.created_keys.append("LocalNetworkAccess")
    lna = policies.setdefault("LocalNetworkAccess", {})
    if "SkipDomains" not in lna:
        change.created_keys.append("SkipDomains")
    skip = lna.setdefault("SkipDomains", [])
    change.added = [d for d in dict.fromkeys(domains) if d not in skip]
    if not change.added:
        return change                    # already listed by the admin: nothing of ours to add
    skip.extend(change.added)
    # State first: should the policy write fail half-way, remove still knows what to undo.
    write_atomic(state, json.dumps(asdict(change), indent=2) + "\n", mode=SHARED)
    _write(file, doc)
    return change


def remove(state: Path) -> Change | None:
    """Take out what the recorded ``add`` put in; the state file goes either way."""
    change = _read_state(state)
    if change is None:
        return None
    file = Path(change.file)
    try:
        doc = _load(file)
        if doc is not None:
            _undo(file, doc, change)
    finally:
        state.unlink(missing_ok=True)
    return change


def _undo(file: Path, doc: dict[str, Any], change: Change) -> None:
    policies = doc.get("policies", {})
    lna = policies.get("LocalNetworkAccess", {})
    if "SkipDomains" in lna:                # the admin may have taken it out since
        lna["SkipDomains"] = [d for d in lna["SkipDomains"] if d not in change.added]
        # Containers we created go when empty; the admin's stay even when we emptied them.
        if "SkipDomains" in change.created_keys and not lna["SkipDomains"]:
            del lna["SkipDomains"]
    if "LocalNetworkAccess" in change.created_keys and "LocalNetworkAccess" in policies \
            and not lna:
        del policies["LocalNetworkAccess"]
    if "policies" in change.created_keys and "policies" in doc and not policies:
        del doc["policies"]
    if change.created_file and not doc:
        file.unlink(missing_ok=True)
        for folder in reversed(change.created_dirs):
            try:
                os.rmdir(folder)          # only when empty: someone else may use it now
            except OSError:
                break
        return
    _write(file, doc)


# -- the installers' command ---------------------------------------------------------------

def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "firefox-policy", help="(installers) add or remove our Firefox SkipDomains entries",
        description="Merge the allowed pages' host names into Firefox's policies.json "
                    "(LocalNetworkAccess -> SkipDomains) without touching the admin's other "
                    "policies, or remove exactly what was added. Run by the deb and pkg "
                    "scripts as root.")
    p.add_argument("action", choices=("add", "remove"))
    p.add_argument("origins", nargs="*", help="allowed origins (add)")
    p.add_argument("--file", type=Path,
                   help="the policies.json (default: the one this system's Firefox reads)")
    p.add_argument("--state", type=Path, help="where the change is recorded "
                   "(default: /var/lib/thaicard-agent or the macOS equivalent)")
    p.set_defaults(func=cmd_firefox_policy)


def cmd_firefox_policy(args: argparse.Namespace) -> int:
    from .osroom import current

    room = current()
    state = args.state or room.installer_state_dir()
    if state is None:
        print("No Firefox policies.json on this system / ระบบนี้ไม่ใช้ policies.json ของ Firefox")
        return 0
    if args.state is None:
        state = state / "firefox-policy.json"
    if args.action == "remove":
        change = remove(state)
        if change is not None:
            print(f"{change.file}: removed / นำออกแล้ว: {', '.join(change.added) or '-'}")
        return 0
    file = args.file or room.firefox_policy_file()
    if file is None:
        print("Firefox is not installed: no policy written / ไม่พบ Firefox จึงไม่ได้เขียนนโยบาย")
        return 0
    domains = skip_domains(args.origins)
    change = add(file, domains, state)
    if not domains:
        print("No page host names to add (loopback origins need none) / ไม่มีชื่อโฮสต์ที่ต้องเพิ่ม")
    else:
        print(f"{file}: SkipDomains + "
              f"{', '.join(change.added) or '(already listed / มีอยู่แล้ว)'}")
    return 0
