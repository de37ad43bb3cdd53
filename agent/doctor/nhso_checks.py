"""The NHSO checks: settings, TLS to the zone, the clock against NHSO's ``Date``, the token
(one harmless lookup: the recorder's own rights), and the claim outbox.

The outbox is opened read-only and only counted: the doctor never changes a claim.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import sqlite3
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import AgentError, NhsoTokenInvalid, NhsoUnavailable
from ..nhso.client import NhsoClient, make_ssl_context
from ..nhso.settings import NhsoSettings, load_settings
from ..nhso.token import TokenStore
from ..nhso.validation import BANGKOK
from ..nhso.visit_source import KEY_USERNAME as VISIT_SOURCE_KEY
from .checks import Context, _f
from .report import Finding

CLOCK_WARN_S = 120          # claims carry service times: minutes matter near midnight
CLOCK_FAIL_S = 900
PROBE_TIMEOUT = 10.0

SETTINGS_TITLE = ("NHSO settings", "การตั้งค่า สปสช.")
REACH_TITLE = ("Connection and TLS to NHSO", "การเชื่อมต่อและ TLS ไปยัง สปสช.")
CLOCK_TITLE = ("This PC's clock against NHSO", "นาฬิกาเครื่องเทียบกับ สปสช.")
TOKEN_TITLE = ("NHSO token", "Token สปสช.")
CLAIMS_TITLE = ("Claims in the outbox", "เคลมในคิวส่ง")


@dataclass
class Probe:
    """What one plain GET to the zone's claim service root saw."""

    status: int | None = None
    date: dt.datetime | None = None
    error: str | None = None
    tls_error: bool = False


async def probe_zone(settings: NhsoSettings) -> Probe:
    url = settings.urls.nhsoendpoint
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session, \
                session.get(url, ssl=make_ssl_context(), allow_redirects=False) as resp:
            header = resp.headers.get("Date")
            date = email.utils.parsedate_to_datetime(header) if header else None
            return Probe(resp.status, date)
    except aiohttp.ClientSSLError as exc:
        return Probe(error=f"{type(exc).__name__}: {exc}", tls_error=True)
    except (aiohttp.ClientError, TimeoutError, ssl.SSLError, OSError, ValueError) as exc:
        return Probe(error=type(exc).__name__)


def check_nhso(ctx: Context, store: TokenStore | None = None) -> list[Finding]:
    try:
        settings = load_settings()
    except AgentError as exc:
        return [_f("nhso_settings", "fail", SETTINGS_TITLE,
                   (f"The NHSO settings are not valid: {exc.detail}.",
                    f"การตั้งค่า สปสช. ไม่ถูกต้อง: {exc.detail}"),
                   ("Fix nhso.json or the nhso* policy values (docs/nhso.md).",
                    "แก้ไข nhso.json หรือค่า nhso* ในนโยบาย"))]
    store = store or ctx.token_store or TokenStore()
    try:
        token = store.get()
    except AgentError:
        token = None
    if not settings.hcode and not token:
        return [_f("nhso_settings", "info", SETTINGS_TITLE,
                   ("NHSO claims are not set up on this PC (no hospital code, no token); "
                    "card reading does not need them.",
                    "ยังไม่ได้ตั้งค่าการส่งเคลม สปสช. (ไม่มีรหัสหน่วยบริการและ Token) "
                    "การอ่านบัตรไม่ต้องใช้")), check_claims(settings)]
    found = [_settings_finding(settings)]
    probe = asyncio.run(probe_zone(settings))
    found.append(_reach_finding(settings, probe))
    if probe.date is not None:
        found.append(_clock_finding(probe.date))
    found.append(_token_finding(settings, token, probe))
    found.append(check_claims(settings))
    if settings.visit_source_url:
        found.append(_visit_source_finding(settings, store))
    return found


VISIT_SOURCE_TITLE = ("Kiosk: the HIS's visit source", "KIOSK: แหล่งรายการรับบริการของ HIS")


def _visit_source_finding(settings: NhsoSettings, store: TokenStore) -> Finding:
    """Its key is set (the HIS itself is not asked: a question needs a patient's id)."""
    try:
        key = store.sibling(VISIT_SOURCE_KEY).get()
    except AgentError:
        key = None
    where = settings.visit_source_url
    if not key:
        return _f("visit_source", "warn", VISIT_SOURCE_TITLE,
                  (f"{where} is set but its key is not: the kiosk cannot list visits.",
                   f"ตั้ง {where} แล้วแต่ยังไม่มีกุญแจ หน้าจอ KIOSK จะหารายการรับบริการไม่ได้"),
                  ("Store it: thaicard-agent visit-source key set (docs/kiosk.md).",
                   "บันทึกกุญแจด้วยคำสั่ง thaicard-agent visit-source key set"), url=where)
    return _f("visit_source", "ok", VISIT_SOURCE_TITLE,
              (f"{where}, key stored, time-out {settings.visit_source_timeout:g} s.",
               f"{where} มีกุญแจแล้ว รอคำตอบ {settings.visit_source_timeout:g} วินาที"),
              url=where)


def _settings_finding(settings: NhsoSettings) -> Finding:
    missing = settings.missing_for_claims()
    zone = settings.base_url or settings.zone
    if missing:
        return _f("nhso_settings", "warn", SETTINGS_TITLE,
                  (f"Zone {zone}; missing for claims: {', '.join(missing)}.",
                   f"โซน {zone} ยังขาดค่าสำหรับส่งเคลม: {', '.join(missing)}"),
                  ("Set them: `thaicard-agent nhso config --hcode ... --source-id ... "
                   "--recorder-pid ...` or the nhso* policy values.",
                   "ตั้งค่าด้วย `thaicard-agent nhso config ...` หรือค่า nhso* ในนโยบาย"),
                  zone=zone, missing=missing)
    return _f("nhso_settings", "ok", SETTINGS_TITLE,
              (f"Hospital {settings.hcode}, source {settings.source_id}, zone {zone}.",
               f"หน่วยบริการ {settings.hcode} ระบบ {settings.source_id} โซน {zone}"),
              zone=zone, hcode=settings.hcode)


def _reach_finding(settings: NhsoSettings, probe: Probe) -> Finding:
    url = settings.urls.nhsoendpoint
    host = urlsplit(url).netloc
    if probe.error is not None:
        if probe.tls_error:
            en = (f"TLS to {host} failed: {probe.error}. A proxy that inspects HTTPS needs "
                  "its CA in the OS certificate store.")
            th = f"TLS ไปยัง {host} ล้มเหลว: {probe.error} หาก proxy ตรวจ HTTPS ต้องติดตั้ง CA ของ proxy"
        else:
            en = f"Cannot reach {host}: {probe.error}. Claims wait in the outbox."
            th = f"เชื่อมต่อ {host} ไม่ได้: {probe.error} เคลมจะรอในคิว"
        return _f("nhso_reach", "fail", REACH_TITLE, (en, th),
                  ("Check the network, proxy and firewall to the NHSO host; open "
                   f"{url} in the browser of this PC.",
                   f"ตรวจเครือข่าย proxy และ firewall ไปยัง สปสช. ลองเปิด {url} ในเบราว์เซอร์"),
                  host=host, error=probe.error)
    scheme = urlsplit(url).scheme
    note_en = "" if scheme == "https" else " (plain HTTP: a test server, no TLS)"
    note_th = "" if scheme == "https" else " (HTTP ธรรมดา: เซิร์ฟเวอร์ทดสอบ ไม่มี TLS)"
    return _f("nhso_reach", "ok" if scheme == "https" else "info", REACH_TITLE,
              (f"{host} answers (HTTP {probe.status}){note_en}.",
               f"{host} ตอบกลับ (HTTP {probe.status}){note_th}"), host=host, status=probe.status)


def _clock_finding(theirs: dt.datetime) -> Finding:
    skew = time.time() - theirs.timestamp()
    if abs(skew) < CLOCK_WARN_S:
        return _f("clock", "ok", CLOCK_TITLE,
                  (f"Within {abs(skew):.0f} s of NHSO.", f"ต่างจาก สปสช. {abs(skew):.0f} วินาที"),
                  skewSeconds=round(skew))
    ahead = "ahead of" if skew > 0 else "behind"
    ahead_th = "เร็วกว่า" if skew > 0 else "ช้ากว่า"
    minutes = abs(skew) / 60
    return _f("clock", "fail" if abs(skew) >= CLOCK_FAIL_S else "warn", CLOCK_TITLE,
              (f"This PC's clock is {minutes:.0f} min {ahead} NHSO. Claims carry the service "
               "time and must be sent the same day: a wrong clock gets them refused or "
               "dated wrongly.",
               f"นาฬิกาเครื่องนี้{ahead_th} สปสช. {minutes:.0f} นาที เคลมต้องส่งภายในวันเดียวกัน "
               "นาฬิกาผิดอาจทำให้ถูกปฏิเสธหรือวันที่ผิด"),
              ("Turn on automatic time (NTP / Windows Time, time zone Asia/Bangkok).",
               "เปิดการตั้งเวลาอัตโนมัติ (NTP / Windows Time) และเขตเวลา Asia/Bangkok"),
              skewSeconds=round(skew))


def _token_finding(settings: NhsoSettings, token: str | None, probe: Probe) -> Finding:
    if not token:
        return _f("nhso_token", "warn", TOKEN_TITLE,
                  ("No NHSO token is stored for this user: claims and coverage cannot be sent.",
                   "ผู้ใช้นี้ยังไม่มี Token สปสช. จึงส่งเคลมและตรวจสิทธิ์ไม่ได้"),
                  ("Store the hospital's token: `thaicard-agent token set` or the tray's "
                   "NHSO token item.",
                   "บันทึก Token: `thaicard-agent token set` หรือเมนู Token ในไอคอน"))
    if probe.error is not None or not settings.recorder_pid:
        why = ("NHSO cannot be reached" if probe.error is not None
               else "no recorderPid to look up")
        return _f("nhso_token", "info", TOKEN_TITLE,
                  (f"A token is stored; not tested ({why}).",
                   f"มี Token แล้ว ยังไม่ได้ทดสอบ ({why})"))

    async def ask() -> None:
        async def provide() -> str:
            return token

        client = NhsoClient(settings, provide)
        try:
            # The recorder's own rights: read-only and about the staff member, no patient.
            # NHSO's day is the Bangkok day, whatever the machine's time zone.
            await client.right_search(settings.recorder_pid,
                                      dt.datetime.now(BANGKOK).date().isoformat())
        finally:
            await client.close()

    try:
        asyncio.run(ask())
    except NhsoTokenInvalid as exc:
        return _f("nhso_token", "fail", TOKEN_TITLE,
                  (f"NHSO refused the token ({exc.detail}).", f"สปสช. ปฏิเสธ Token ({exc.detail})"),
                  ("Get a new token from the NHSO site for this hospital code and store it "
                   "with `thaicard-agent token set`.",
                   "ขอ Token ใหม่จากเว็บ สปสช. สำหรับรหัสหน่วยบริการนี้ แล้วบันทึกด้วย "
                   "`thaicard-agent token set`"), code=exc.code)
    except NhsoUnavailable as exc:
        return _f("nhso_token", "warn", TOKEN_TITLE,
                  (f"The token could not be tested: {exc.detail}.",
                   f"ทดสอบ Token ไม่ได้: {exc.detail}"),
                  ("Run doctor again later.", "ตรวจอีกครั้งภายหลัง"), code=exc.code)
    except AgentError as exc:
        # NHSO answered the lookup itself (e.g. a rule about the person): the token passed.
        return _f("nhso_token", "ok", TOKEN_TITLE,
                  (f"NHSO accepted the token (lookup answered {exc.code}).",
                   f"สปสช. ยอมรับ Token (ตอบ {exc.code})"))
    return _f("nhso_token", "ok", TOKEN_TITLE,
              ("NHSO accepted the token.", "สปสช. ยอมรับ Token"))


def outbox_counts(settings: NhsoSettings) -> dict[str, Any] | None:
    """Counts by status, in doubt, flagged due, oldest unsent age; None without an outbox."""
    path = settings.outbox_path
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        counts = dict(db.execute("SELECT status, COUNT(*) FROM claims GROUP BY status").fetchall())
        doubt, due, oldest = db.execute(
            "SELECT SUM(in_doubt), SUM(due_flagged), MIN(created_at) FROM claims "
            "WHERE status IN ('queued', 'sending', 'needs_review')").fetchone()
    finally:
        db.close()
    return {"queued": counts.get("queued", 0) + counts.get("sending", 0),
            "failed": counts.get("failed", 0), "sent": counts.get("sent", 0),
            "needsReview": counts.get("needs_review", 0),
            "inDoubt": doubt or 0, "due": due or 0,
            "oldestUnsentSeconds": round(time.time() - oldest) if oldest else None}


def check_claims(settings: NhsoSettings) -> Finding:
    try:
        counts = outbox_counts(settings)
    except sqlite3.Error as exc:
        return _f("claims", "fail", CLAIMS_TITLE,
                  (f"The claim outbox cannot be read: {exc}.", f"อ่านคิวเคลมไม่ได้: {exc}"),
                  ("Keep the file (claims may be in it) and send it with a support bundle.",
                   "เก็บไฟล์ไว้ (อาจมีเคลมอยู่) และส่งพร้อม support bundle"))
    if counts is None:
        return _f("claims", "ok", CLAIMS_TITLE, ("No claim outbox yet.", "ยังไม่มีคิวเคลม"))
    c = counts
    text_en = (f"{c['queued']} waiting ({c['inDoubt']} needing a check with NHSO, {c['due']} "
               f"past the due time), {c['needsReview']} needing review, {c['failed']} failed, "
               f"{c['sent']} sent.")
    text_th = (f"รอส่ง {c['queued']} (รอตรวจกับ สปสช. {c['inDoubt']}, เลยเวลา {c['due']}) "
               f"รอเจ้าหน้าที่ตรวจสอบ {c['needsReview']} ล้มเหลว {c['failed']} ส่งแล้ว {c['sent']}")
    if c["needsReview"]:
        return _f("claims", "warn", CLAIMS_TITLE, (text_en, text_th),
                  ("Claims in review are never sent on their own: open the tray's Claims to "
                   "review item (or GET /v1/claims?status=needs_review) and choose: send "
                   "again, or take the listed code (docs/nhso.md).",
                   "เคลมที่รอตรวจสอบจะไม่ถูกส่งเอง เปิดเมนู \"เคลมที่รอตรวจสอบ\" ในไอคอน แล้วเลือก "
                   "ส่งใหม่ หรือใช้รหัสที่แสดง"), **c)
    if c["failed"] or c["due"]:
        return _f("claims", "warn", CLAIMS_TITLE, (text_en, text_th),
                  ("Open the tray's Claims item (or GET /v1/claims?status=failed) to see why; "
                   "retry after fixing the cause.",
                   "เปิดเมนูเคลมในไอคอนเพื่อดูสาเหตุ แก้แล้วกดส่งใหม่"), **c)
    return _f("claims", "ok", CLAIMS_TITLE, (text_en, text_th), **c)
