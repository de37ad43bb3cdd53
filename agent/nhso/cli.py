"""``thaicard-agent token set|status|clear``, ``thaicard-agent nhso config|show`` and
``thaicard-agent visit-source key set|status|clear``.

The token and the key are read from a hidden prompt or from stdin (``... token set <
file``), never from the command line, where other users could see them in the process list
and shells keep them in their history.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

from ..errors import ERROR_TABLE
from ..usecases import clear_token, set_token, update_nhso_settings
from .settings import ZONES, load_settings
from .token import TokenStore, backend_name, mask
from .visit_source import KEY_USERNAME as VISIT_SOURCE_KEY

# What ``nhso config`` options set: option dest -> JSON key of the settings file.
CONFIG_OPTIONS = {
    "hcode": "hcode", "source_id": "sourceId", "recorder_pid": "recorderPid", "zone": "zone",
    "base_url": "baseUrl", "retention_days": "retentionDays", "due_time": "dueTime",
    "authen_code_api": "authenCodeApi", "visit_source_url": "visitSourceUrl",
    "visit_source_timeout": "visitSourceTimeout",
}


def add_token_commands(
        subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = subparsers.add_parser(
        "token", help="the hospital's NHSO token in the system keyring",
        description="Store, show (masked) or remove the NHSO token. It is kept in the "
                    "operating system's keyring of the current user, never in a file.")
    tsub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = tsub.add_parser("set", help="store the token (read from a hidden prompt or stdin)")
    p.add_argument("--hcode", help="the 5-digit hospital code the token was issued for "
                                   "(default: the configured hcode)")
    p.set_defaults(func=cmd_token_set)
    p = tsub.add_parser("status", help="show whether a token is stored (masked) and its hcode")
    p.set_defaults(func=cmd_token_status)
    p = tsub.add_parser("clear", help="remove the token from the keyring")
    p.set_defaults(func=cmd_token_clear)

    nhso = subparsers.add_parser("nhso", help="NHSO settings (hcode, sourceId, zone, ...)",
                                 description="Show or change the NHSO settings of this user.")
    nsub = nhso.add_subparsers(dest="nhso_command", metavar="ACTION", required=True)
    p = nsub.add_parser("config", help="change settings (an empty value removes one)")
    p.add_argument("--hcode", help="5-digit hospital code (รหัสหน่วยบริการ)")
    p.add_argument("--source-id", help="system code assigned by NHSO")
    p.add_argument("--recorder-pid", help="13-digit citizen id of the recording officer")
    p.add_argument("--zone", choices=list(ZONES), help="NHSO zone")
    p.add_argument("--base-url", help="one root URL for all NHSO services (a local test "
                                      "server); empty to use the zone's hosts")
    p.add_argument("--retention-days", type=int, help="days to keep sent/failed claims")
    p.add_argument("--due-time", help="HH:MM Bangkok time after which unsent claims of the "
                                      "day are flagged")
    p.add_argument("--authen-code-api", choices=["on", "off"],
                   help="let confirm-save call the (unverified) AuthenCode API")
    p.add_argument("--visit-source-url", help="the HIS's https:// endpoint listing a "
                                              "patient's visits of a day (docs/kiosk.md); "
                                              "empty: none")
    p.add_argument("--visit-source-timeout", type=float,
                   help="seconds to wait for the visit source (default 5)")
    p.set_defaults(func=cmd_nhso_config)
    p = nsub.add_parser("show", help="print the settings as JSON")
    p.set_defaults(func=cmd_nhso_show)

    source = subparsers.add_parser(
        "visit-source", help="the key of the HIS's visit source (docs/kiosk.md)",
        description="Store, show (masked) or remove the key the agent sends to the HIS's "
                    "visit source. It is kept in the operating system's keyring.")
    ssub = source.add_subparsers(dest="visit_source_command", metavar="ACTION", required=True)
    key = ssub.add_parser("key", help="the visit source's key")
    ksub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    p = ksub.add_parser("set", help="store the key (read from a hidden prompt or stdin)")
    p.set_defaults(func=cmd_visit_key_set)
    p = ksub.add_parser("status", help="show whether a key is stored (masked)")
    p.set_defaults(func=cmd_visit_key_status)
    p = ksub.add_parser("clear", help="remove the key from the keyring")
    p.set_defaults(func=cmd_visit_key_clear)


def _say(th: str, en: str, *, stream: Any = None) -> None:
    print(f"{th}\n{en}", file=stream or sys.stdout)


def read_token_input() -> str:
    if sys.stdin is not None and sys.stdin.isatty():
        return getpass.getpass("NHSO token (ไม่แสดงขณะพิมพ์ / hidden): ")
    return sys.stdin.readline() if sys.stdin is not None else ""


def cmd_token_set(args: argparse.Namespace, store: TokenStore | None = None) -> int:
    saved = set_token(read_token_input, hcode=args.hcode, store=store)
    assert saved is not None                 # the prompt has no cancel: it reads a line
    hcode = saved.hcode
    _say(f"บันทึก Token ในที่เก็บรหัสผ่านของระบบแล้ว (รหัสหน่วยบริการ {hcode}): {saved.masked}",
         f"Token stored in the system keyring for hcode {hcode}: {saved.masked} "
         f"[{saved.backend}]")
    if saved.hcode_mismatch:
        _say(f"คำเตือน: รหัสหน่วยบริการที่ตั้งไว้คือ {saved.configured_hcode} ไม่ตรงกับ Token",
             f"Warning: the configured hcode is {saved.configured_hcode}, not {hcode}.",
             stream=sys.stderr)
    return 0


def cmd_token_status(args: argparse.Namespace, store: TokenStore | None = None) -> int:
    store = store or TokenStore()
    settings = load_settings()
    token = store.get()
    backend = backend_name(store.backend)
    if not token:
        _say("ยังไม่ได้ตั้งค่า Token ของ สปสช.", f"No NHSO token is stored. [{backend}]")
        return ERROR_TABLE["nhso_token_missing"].exit_code
    hcode = settings.token_hcode or "?"
    _say(f"Token: {mask(token)} สำหรับรหัสหน่วยบริการ {hcode}",
         f"Token: {mask(token)} for hcode {hcode}; zone {settings.zone} [{backend}]")
    if settings.hcode and settings.token_hcode and settings.hcode != settings.token_hcode:
        _say(f"คำเตือน: รหัสหน่วยบริการที่ตั้งไว้คือ {settings.hcode} ไม่ตรงกับ Token",
             f"Warning: the configured hcode is {settings.hcode}, the token is for "
             f"{settings.token_hcode}.", stream=sys.stderr)
    return 0


def cmd_token_clear(args: argparse.Namespace, store: TokenStore | None = None) -> int:
    if clear_token(store=store):
        _say("ลบ Token ออกจากที่เก็บรหัสผ่านแล้ว", "The NHSO token was removed.")
    else:
        _say("ไม่มี Token ให้ลบ", "There was no NHSO token to remove.")
    return 0


def cmd_nhso_config(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    for dest, key in CONFIG_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "authen_code_api":
            value = value == "on"
        changes[key] = value
    settings = update_nhso_settings(changes)
    json.dump(settings.public_view(), sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def cmd_nhso_show(args: argparse.Namespace) -> int:
    settings = load_settings()
    out = settings.public_view()
    out["missing"] = settings.missing_for_claims()
    out["settingsFile"] = str(settings.settings_path)
    out["outbox"] = str(settings.outbox_path)
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0



def _visit_key_store(store: TokenStore | None) -> TokenStore:
    return (store or TokenStore()).sibling(VISIT_SOURCE_KEY)


def cmd_visit_key_set(args: argparse.Namespace, store: TokenStore | None = None) -> int:
    keys = _visit_key_store(store)
    if sys.stdin is not None and sys.stdin.isatty():
        key = getpass.getpass("visit source key (ไม่แสดงขณะพิมพ์ / hidden): ")
    else:
        key = sys.stdin.readline() if sys.stdin is not None else ""
    keys.set(key)
    shown = mask(key.strip())
    _say(f"บันทึกกุญแจของระบบรายการรับบริการแล้ว: {shown}",
         f"Visit source key stored: {shown} [{backend_name(keys.backend)}]")
    return 0


def cmd_visit_key_status(args: argparse.Namespace, store: TokenStore | None = None) -> int:
    keys = _visit_key_store(store)
    key = keys.get()
    if not key:
        _say("ยังไม่ได้ตั้งกุญแจของระบบรายการรับบริการ", "No visit source key is stored.")
        return ERROR_TABLE["visit_source_unavailable"].exit_code
    _say(f"กุญแจ: {mask(key)}", f"Key: {mask(key)} [{backend_name(keys.backend)}]")
    return 0


def cmd_visit_key_clear(args: argparse.Namespace, store: TokenStore | None = None) -> int:
    if _visit_key_store(store).clear():
        _say("ลบกุญแจของระบบรายการรับบริการแล้ว", "The visit source key was removed.")
    else:
        _say("ไม่มีกุญแจให้ลบ", "There was no visit source key to remove.")
    return 0
