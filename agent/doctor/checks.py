"""The workstation checks: PC/SC, readers, a test read, the port, loopback, folders, keyring.

Each check returns one ``Finding`` and never raises: a check that cannot run says so in
its own finding. The readers are reached only through the core's door (``open_backend``,
``list_readers``, ``read_once``); the OS-specific questions go to ``agent.osroom``.
"""

from __future__ import annotations

import json
import socket
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import osroom, paths
from ..card.values import mask_citizen_id
from ..config import Config
from ..core import list_readers, open_backend, read_once
from ..errors import AgentError
from ..logging_setup import default_log_dir
from .report import Finding

LOG_FOLDER_WARN_BYTES = 50_000_000   # the rotating log keeps ~6 MB; more means a leak
PROBE_TIMEOUT = 3.0


@dataclass
class Context:
    """What the checks look at; tests hand in their own folders, room and policy."""

    config: Config
    room: osroom.OsRoom = field(default_factory=osroom.current)
    data_dir: Path = field(default_factory=paths.user_data_dir)
    test_read: bool = True
    token_store: Any = None          # agent.nhso.token.TokenStore; None: the OS keyring
    # Filled by the reader check for the ones after it.
    readers: list[tuple[str, bool]] = field(default_factory=list)
    pcsc_ok: bool = False
    agent_answers: bool | None = None


def _f(check: str, verdict: str, titles: tuple[str, str], explain: tuple[str, str],
       action: tuple[str, str] = ("", ""), **detail: Any) -> Finding:
    return Finding(check, verdict, titles[0], titles[1], explain[0], explain[1], action[0],
                   action[1], detail)


# -- readers ------------------------------------------------------------------------------
PCSC_TITLE = ("Smart card service (PC/SC)", "บริการสมาร์ตการ์ด (PC/SC)")
READERS_TITLE = ("Card readers", "เครื่องอ่านบัตร")
READ_TITLE = ("Test read of the inserted card", "ทดสอบอ่านบัตรที่เสียบอยู่")


def check_readers(ctx: Context) -> list[Finding]:
    """PC/SC running, the readers and their state, then one test read (masked id only)."""
    kind = ctx.config.backend
    try:
        backend = open_backend(kind)
    except AgentError as exc:
        return [_pcsc_down(exc)]
    try:
        try:
            states = list_readers(backend)
        except AgentError as exc:
            return [_pcsc_down(exc)]
        ctx.pcsc_ok = True
        ctx.readers = [(s.name, s.present) for s in states]
        found = [_f("pcsc", "ok" if kind != "demo" else "info", PCSC_TITLE,
                    ("The smart card service answers." if kind != "demo" else
                     "The agent is set to the demo reader (backend demo): no real card is "
                     "read.",
                     "บริการสมาร์ตการ์ดทำงานปกติ" if kind != "demo" else
                     "ตั้งค่าให้ใช้เครื่องอ่านจำลอง (demo) จะไม่อ่านบัตรจริง"),
                    ("", "") if kind != "demo" else
                    ("Set backend to pcsc in the policy or config for real readers.",
                     "ตั้งค่า backend เป็น pcsc เพื่อใช้เครื่องอ่านจริง"), backend=kind)]
        found.append(_readers_finding(ctx.readers))
        if ctx.test_read:
            found.append(_test_read(backend, ctx.readers))
        return found
    finally:
        backend.close()


def _pcsc_down(exc: AgentError) -> Finding:
    return _f("pcsc", "fail", PCSC_TITLE,
              (f"The smart card service does not answer: {exc.detail or exc.code}.",
               f"บริการสมาร์ตการ์ดไม่ตอบสนอง: {exc.detail or exc.code}"),
              ("Start it: Linux `sudo systemctl enable --now pcscd.socket`; Windows "
               "`sc start SCardSvr` (service \"Smart Card\", startup Automatic); macOS: "
               "restart the Mac.",
               "เปิดบริการ: Linux `sudo systemctl enable --now pcscd.socket`; Windows "
               "`sc start SCardSvr` (บริการ Smart Card ตั้งเป็น Automatic); macOS: รีสตาร์ตเครื่อง"),
              code=exc.code)


def _readers_finding(readers: list[tuple[str, bool]]) -> Finding:
    listed = [{"name": name, "card": present} for name, present in readers]
    if not readers:
        return _f("readers", "warn", READERS_TITLE,
                  ("No card reader is connected.", "ไม่พบเครื่องอ่านบัตรที่เชื่อมต่ออยู่"),
                  ("Plug the reader in (try another USB port, no USB hub) and run doctor "
                   "again; a new reader may need its driver (CCID) installed.",
                   "เสียบเครื่องอ่านบัตร (ลองพอร์ต USB อื่น ไม่ผ่าน hub) แล้วตรวจอีกครั้ง "
                   "เครื่องอ่านรุ่นใหม่อาจต้องติดตั้งไดรเวอร์ (CCID)"), readers=listed)
    names = ", ".join(f"{n} ({'card in' if p else 'empty'})" for n, p in readers)
    names_th = ", ".join(f"{n} ({'มีบัตร' if p else 'ไม่มีบัตร'})" for n, p in readers)
    return _f("readers", "ok", READERS_TITLE, (f"Readers: {names}.", f"เครื่องอ่าน: {names_th}"),
              readers=listed)


def _test_read(backend: Any, readers: list[tuple[str, bool]]) -> Finding:
    with_card = [name for name, present in readers if present]
    if not with_card:
        return _f("card_read", "info", READ_TITLE,
                  ("No card is inserted, so no test read was made.",
                   "ไม่มีบัตรเสียบอยู่ จึงไม่ได้ทดสอบอ่าน"),
                  ("Insert an ID card and run doctor again to test a read.",
                   "เสียบบัตรประชาชนแล้วตรวจอีกครั้งเพื่อทดสอบการอ่าน"))
    try:
        reader, result = read_once(backend, with_card[0], photo=False)
    except AgentError as exc:
        return _f("card_read", "fail", READ_TITLE,
                  (f"Reading the card in {with_card[0]} failed: {exc.info.message_en} "
                   f"[{exc.code}].", f"อ่านบัตรใน {with_card[0]} ไม่สำเร็จ: "
                   f"{exc.info.message_th} [{exc.code}]"),
                  ("Take the card out, wipe its chip, insert it chip first and face up; "
                   "if it fails again try another card (a broken card) or another reader.",
                   "ถอดบัตร เช็ดชิป แล้วเสียบใหม่ให้ชิปเข้าก่อนและหงายขึ้น หากยังไม่ได้ลองบัตรอื่น "
                   "(บัตรเสีย) หรือเครื่องอ่านอื่น"), reader=with_card[0], code=exc.code)
    masked = mask_citizen_id(str(result.text.citizen_id))
    return _f("card_read", "ok", READ_TITLE,
              (f"Read the card in {reader} in {result.stats.total_ms:.0f} ms: {masked}.",
               f"อ่านบัตรใน {reader} ได้ใน {result.stats.total_ms:.0f} ms: {masked}"),
              reader=reader, maskedId=masked, ms=round(result.stats.total_ms))


# -- the port and the agent ---------------------------------------------------------------
PORT_TITLE = ("The agent's port", "พอร์ตของโปรแกรม")
LOOPBACK_TITLE = ("The agent on 127.0.0.1 and ::1", "โปรแกรมตอบที่ 127.0.0.1 และ ::1")


def _get_status(host: str, port: int) -> dict[str, Any] | bool | None:
    """/v1/status of whatever answers there: the JSON, True (answers, not ours), None."""
    url = f"http://{host}:{port}/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as resp:
            body = json.loads(resp.read() or b"null")
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return _listening(host, port) or None
    return body if isinstance(body, dict) and body.get("name") == "thaicard-agent" else True


def _listening(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(PROBE_TIMEOUT)
        return sock.connect_ex((host.strip("[]"), port)) == 0


def check_port(ctx: Context) -> Finding:
    """Who holds the agent's port: our agent (fine), nobody (not running), another program."""
    port = ctx.config.port
    status = _get_status("127.0.0.1", port)
    if isinstance(status, dict):
        ctx.agent_answers = True
        version = status.get("version")
        return _f("port", "ok", PORT_TITLE,
                  (f"Thai Card Agent {version or ''} answers on 127.0.0.1:{port}.",
                   f"Thai Card Agent {version or ''} ตอบที่ 127.0.0.1:{port}"),
                  port=port, version=version)
    if status is None:
        ctx.agent_answers = False
        return _f("port", "warn", PORT_TITLE,
                  (f"Nothing listens on 127.0.0.1:{port}: the agent is not running, so web "
                   "pages cannot read the card.",
                   f"ไม่มีโปรแกรมใดรอที่ 127.0.0.1:{port} โปรแกรมไม่ได้ทำงาน หน้าเว็บจึงอ่านบัตรไม่ได้"),
                  ("Start the tray (Start menu: Thai Card Agent) or `thaicard-agent serve`; "
                   "check that start at login is on.",
                   "เปิดโปรแกรม (เมนู Start: Thai Card Agent) หรือ `thaicard-agent serve` "
                   "และเปิด \"เริ่มเมื่อเข้าสู่ระบบ\""), port=port)
    ctx.agent_answers = False
    owner = ctx.room.port_owner(port) or "a program this OS does not name"
    return _f("port", "fail", PORT_TITLE,
              (f"Another program holds 127.0.0.1:{port}: {owner}. The agent cannot start "
               "while it does (often the NHSO agent).",
               f"โปรแกรมอื่นใช้พอร์ต 127.0.0.1:{port} อยู่: {owner} โปรแกรมจึงเริ่มไม่ได้ "
               "(มักเป็นโปรแกรมของ สปสช.)"),
              ("Uninstall or stop that program (docs/admin.md, \"replacing the NHSO agent\"), "
               "then start the agent.",
               "ถอนการติดตั้งหรือหยุดโปรแกรมนั้น แล้วเปิดโปรแกรมนี้ใหม่"), port=port, owner=owner)


def check_loopback(ctx: Context) -> Finding:
    """127.0.0.1 must answer; ::1 is what Chromium tries first for ``localhost``."""
    port = ctx.config.port
    if ctx.agent_answers is False:
        return _f("loopback", "info", LOOPBACK_TITLE,
                  ("Skipped: the agent is not answering on its port.",
                   "ข้าม: โปรแกรมไม่ตอบที่พอร์ตของตน"))
    v6 = _get_status("[::1]", port)
    if isinstance(v6, dict):
        return _f("loopback", "ok", LOOPBACK_TITLE,
                  ("The agent answers on 127.0.0.1 and ::1.", "โปรแกรมตอบทั้ง 127.0.0.1 และ ::1"),
                  ipv6=True)
    if v6 is True:
        return _f("loopback", "warn", LOOPBACK_TITLE,
                  (f"Another program answers on [::1]:{port}: pages calling "
                   f"http://localhost:{port} reach it instead of the agent.",
                   f"โปรแกรมอื่นตอบที่ [::1]:{port} หน้าเว็บที่เรียก localhost จะไปถึงโปรแกรมนั้น"),
                  ("Stop that program, or make the pages call http://127.0.0.1.",
                   "หยุดโปรแกรมนั้น หรือให้หน้าเว็บเรียก http://127.0.0.1"), ipv6="other")
    return _f("loopback", "ok", LOOPBACK_TITLE,
              ("The agent answers on 127.0.0.1 (this PC has no IPv6 loopback ::1; pages "
               "should call http://127.0.0.1, as the NHSO page does).",
               "โปรแกรมตอบที่ 127.0.0.1 (เครื่องนี้ไม่มี ::1 หน้าเว็บควรเรียก http://127.0.0.1)"),
              ipv6=False)


# -- folders and the keyring --------------------------------------------------------------
DATA_TITLE = ("Data folder (claim outbox)", "โฟลเดอร์ข้อมูล (คิวส่งเคลม)")
LOGS_TITLE = ("Log folder", "โฟลเดอร์บันทึก (log)")
KEYRING_TITLE = ("Keyring for the NHSO token", "ที่เก็บรหัส (keyring) สำหรับ Token สปสช.")


def check_data_dir(ctx: Context) -> Finding:
    folder = ctx.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-", delete=True) as fh:
            fh.write(b"ok")
            fh.flush()
    except OSError as exc:
        return _f("data_dir", "fail", DATA_TITLE,
                  (f"Cannot write in {folder}: {exc.strerror or exc}. Claims cannot be queued.",
                   f"เขียนไฟล์ใน {folder} ไม่ได้: {exc.strerror or exc} จึงเก็บเคลมรอส่งไม่ได้"),
                  ("Give the user write access to that folder (or free disk space); a roaming "
                   "profile or a full disk are common causes.",
                   "ให้สิทธิ์ผู้ใช้เขียนโฟลเดอร์นั้น (หรือเพิ่มพื้นที่ดิสก์)"), folder=str(folder))
    return _f("data_dir", "ok", DATA_TITLE, (f"{folder} is writable.", f"เขียน {folder} ได้"),
              folder=str(folder))


def folder_size(folder: Path) -> int:
    try:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    except OSError:
        return 0


def check_logs(ctx: Context) -> Finding:
    folder = ctx.config.log_dir or default_log_dir()
    size = folder_size(folder) if folder.is_dir() else 0
    mb = size / 1_000_000
    if size > LOG_FOLDER_WARN_BYTES:
        return _f("logs", "warn", LOGS_TITLE,
                  (f"{folder} holds {mb:.1f} MB, more than the agent's rotation keeps.",
                   f"{folder} มีขนาด {mb:.1f} MB มากกว่าที่โปรแกรมเก็บตามปกติ"),
                  ("Delete old files there other than agent.log*; check what else writes "
                   "into it (logDir setting).", "ลบไฟล์เก่าที่ไม่ใช่ agent.log* ออก"),
                  folder=str(folder), bytes=size)
    return _f("logs", "ok", LOGS_TITLE,
              (f"{folder}: {mb:.1f} MB.", f"{folder}: {mb:.1f} MB"), folder=str(folder),
              bytes=size)


def check_keyring(ctx: Context) -> Finding:
    from ..nhso.token import TokenStore, backend_name

    store = ctx.token_store or TokenStore()
    try:
        store.check_backend()
    except AgentError as exc:
        return _f("keyring", "warn", KEYRING_TITLE,
                  (f"No usable keyring: {exc.detail or exc.info.message_en}. The NHSO token "
                   "cannot be stored (card reading is not affected).",
                   f"ไม่มี keyring ที่ใช้ได้: {exc.detail or exc.info.message_th} "
                   "จึงเก็บ Token สปสช. ไม่ได้ (การอ่านบัตรไม่กระทบ)"),
                  ("Log in to a desktop session with a keyring (Windows Credential Manager, "
                   "macOS Keychain, GNOME Keyring/KWallet on Linux).",
                   "เข้าสู่ระบบแบบมีหน้าจอที่มี keyring (Credential Manager, Keychain, "
                   "GNOME Keyring/KWallet)"), code=exc.code)
    name = backend_name(store.backend)
    return _f("keyring", "ok", KEYRING_TITLE, (f"Keyring: {name}.", f"keyring: {name}"),
              backend=name)
