"""``thaicard-agent lan key set|clear`` and ``thaicard-agent lan show``: the LAN listener's
shared key (in the OS keyring, like the NHSO token) and its effective settings.

``key set --generate`` makes a random key and prints it once, for the admin to configure
on the HIS server; ``key set`` alone reads one from a hidden prompt or stdin, never from
the command line (other users see the process list).
"""

from __future__ import annotations

import argparse
import getpass
import json
import secrets
import sys

from ..config import ConfigInvalid
from ..nhso.token import backend_name
from .listener import KEY_HEADER, MIN_KEY_LENGTH, key_store
from .settings import load_lan_settings


def add_lan_commands(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    lan = subparsers.add_parser(
        "lan", help="the opt-in LAN listener for HIS servers (key, settings)",
        description="The shared key HIS servers send in X-Thaicard-Key, and the listener's "
                    "settings (set by an admin: docs/admin.md).")
    sub = lan.add_subparsers(dest="lan_command", metavar="ACTION", required=True)
    key = sub.add_parser("key", help="store or remove the shared key (system keyring)")
    ksub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    p = ksub.add_parser("set", help="store a key (hidden prompt or stdin), or --generate one")
    p.add_argument("--generate", action="store_true",
                   help="make a random key, store it and print it once")
    p.set_defaults(func=cmd_key_set)
    p = ksub.add_parser("clear", help="remove the key (the listener then refuses everyone)")
    p.set_defaults(func=cmd_key_clear)
    p = sub.add_parser("show", help="the effective listener settings and whether a key is set")
    p.set_defaults(func=cmd_show)


def _read_key() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass("LAN key (ไม่แสดงขณะพิมพ์ / hidden): ")
    return sys.stdin.readline() if sys.stdin is not None else ""


def cmd_key_set(args: argparse.Namespace) -> int:
    key = secrets.token_urlsafe(32) if args.generate else _read_key().strip()
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigInvalid(f"the LAN key must be at least {MIN_KEY_LENGTH} characters")
    store = key_store()
    store.set(key)
    print(f"บันทึกรหัสสำหรับเซิร์ฟเวอร์ HIS แล้ว\nLAN key stored [{backend_name(store.backend)}]")
    if args.generate:
        print(f"{KEY_HEADER}: {key}")
    return 0


def cmd_key_clear(args: argparse.Namespace) -> int:
    removed = key_store().clear()
    print("ลบรหัสแล้ว\nLAN key removed" if removed else "ไม่มีรหัส\nNo LAN key was stored")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = load_lan_settings()
    view = settings.public_view()
    view["keyConfigured"] = bool(key_store().get())
    json.dump(view, sys.stdout, indent=2)
    print()
    return 0
