"""Thai and English texts of the tray, and which one the user sees.

The language follows the OS unless the user picked one in the menu. Every text has both
languages; a test checks that no key is missing in either.
"""

from __future__ import annotations

import locale
import os

from agent import osroom

LANGUAGES = ("th", "en")

TEXTS: dict[str, dict[str, str]] = {
    "app": {"en": "Thai Card Agent", "th": "Thai Card Agent โปรแกรมอ่านบัตรประชาชน"},
    # states (tooltip and status line)
    "state.starting": {"en": "Starting…", "th": "กำลังเริ่มทำงาน…"},
    "state.offline": {"en": "Agent not reachable", "th": "ติดต่อโปรแกรมอ่านบัตรไม่ได้"},
    "state.pcsc_unavailable": {"en": "Smart card service (PC/SC) not running",
                               "th": "บริการสมาร์ทการ์ด (PC/SC) ไม่ทำงาน"},
    "state.no_reader": {"en": "No card reader connected", "th": "ไม่พบเครื่องอ่านบัตร"},
    "state.idle": {"en": "Ready — insert a card", "th": "พร้อมใช้งาน — เสียบบัตรได้"},
    "state.card_present": {"en": "Card in the reader", "th": "มีบัตรอยู่ในเครื่องอ่าน"},
    "state.reading": {"en": "Reading the card…", "th": "กำลังอ่านบัตร…"},
    "state.error": {"en": "Card read failed", "th": "อ่านบัตรไม่สำเร็จ"},
    "claims.pending": {"en": "{n} claim(s) waiting to be sent",
                       "th": "รอส่งปิดสิทธิ {n} รายการ"},
    "refused.count": {"en": "{n} page(s) or server(s) refused: see why",
                      "th": "มีหน้าเว็บหรือเครื่องที่ถูกปฏิเสธ {n} รายการ: ดูสาเหตุ"},
    "claims.failed": {"en": "{n} claim(s) failed", "th": "ส่งปิดสิทธิไม่สำเร็จ {n} รายการ"},
    "claims.review": {"en": "{n} claim(s) need your review: open",
                      "th": "มีเคลม {n} รายการรอเจ้าหน้าที่ตรวจสอบ: เปิดดู"},
    "token.refused": {"en": "NHSO refuses the token: claims wait",
                      "th": "สปสช. ไม่ยอมรับ Token: เคลมรอส่ง"},
    # menu
    "menu.readers": {"en": "Readers", "th": "เครื่องอ่านบัตร"},
    "menu.no_readers": {"en": "(no reader)", "th": "(ไม่มีเครื่องอ่าน)"},
    "reader.card": {"en": "card in", "th": "มีบัตร"},
    "reader.empty": {"en": "no card", "th": "ไม่มีบัตร"},
    "reader.reading": {"en": "reading", "th": "กำลังอ่าน"},
    "reader.error": {"en": "error", "th": "ผิดพลาด"},
    "menu.last_card": {"en": "Card: {cid} {name}", "th": "บัตร: {cid} {name}"},
    "menu.open_status": {"en": "Open status page", "th": "เปิดหน้าสถานะ"},
    "menu.copy_url": {"en": "Copy agent URL", "th": "คัดลอก URL ของโปรแกรม"},
    "menu.settings": {"en": "Settings", "th": "ตั้งค่า"},
    "menu.settings_open": {"en": "Port, allowed websites…", "th": "พอร์ต, เว็บไซต์ที่อนุญาต…"},
    "menu.default_reader": {"en": "Default reader", "th": "เครื่องอ่านหลัก"},
    "menu.default_reader_auto": {"en": "Automatic (the one with a card)",
                                 "th": "อัตโนมัติ (เครื่องที่มีบัตร)"},
    "menu.language": {"en": "Language / ภาษา", "th": "ภาษา / Language"},
    "menu.language_auto": {"en": "Same as the system", "th": "ตามระบบ"},
    "menu.token": {"en": "NHSO token", "th": "Token สปสช."},
    "menu.token_set": {"en": "Set token…", "th": "ตั้งค่า Token…"},
    "menu.token_clear": {"en": "Clear token", "th": "ลบ Token"},
    "menu.claims": {"en": "Claims: {pending} waiting, {failed} failed",
                    "th": "ปิดสิทธิ: รอส่ง {pending}, ไม่สำเร็จ {failed}"},
    "menu.claims_retry": {"en": "Retry failed claims", "th": "ส่งรายการที่ไม่สำเร็จอีกครั้ง"},
    "menu.autostart": {"en": "Start at login", "th": "เริ่มทำงานเมื่อเข้าสู่ระบบ"},
    "menu.logs": {"en": "Open log folder", "th": "เปิดโฟลเดอร์บันทึก (log)"},
    "menu.diagnostics": {"en": "Diagnostics…", "th": "ตรวจสอบปัญหา…"},
    "menu.support_bundle": {"en": "Save a support bundle…",
                            "th": "บันทึกไฟล์สำหรับฝ่ายสนับสนุน…"},
    "menu.about": {"en": "About (version {version})", "th": "เกี่ยวกับ (รุ่น {version})"},
    "menu.demo_insert": {"en": "Demo: insert a card", "th": "สาธิต: เสียบบัตร"},
    "menu.demo_remove": {"en": "Demo: remove the card", "th": "สาธิต: ดึงบัตรออก"},
    "menu.quit": {"en": "Quit", "th": "ออกจากโปรแกรม"},
    # notifications and messages
    "notify.card_read": {"en": "Card read on {reader}", "th": "อ่านบัตรแล้วที่ {reader}"},
    "notify.claim_review": {
        "en": "A claim needs your review: NHSO's records cannot tell whether it arrived",
        "th": "มีเคลมรอตรวจสอบ: ข้อมูลของ สปสช. ระบุไม่ได้ว่าได้รับแล้วหรือไม่"},
    "notify.token_refused": {
        "en": "NHSO refuses the hospital's token; claims are kept and retried",
        "th": "สปสช. ไม่ยอมรับ Token ของหน่วยบริการ เคลมยังเก็บไว้และจะส่งใหม่"},
    "notify.claim_failed": {"en": "A claim could not be sent to NHSO: {code}",
                            "th": "ส่งปิดสิทธิไปยัง สปสช. ไม่สำเร็จ: {code}"},
    "notify.visit_due": {
        "en": "Visit \"{label}\" is still not confirmed by the patient: NHSO pays only "
              "visits closed today",
        "th": "รายการ \"{label}\" ผู้รับบริการยังไม่ได้ยืนยัน สปสช. จ่ายเฉพาะรายการที่ปิดภายในวันนี้"},
    "notify.visit_expired": {
        "en": "Visit \"{label}\" was never confirmed and has expired (its service day ended)",
        "th": "รายการ \"{label}\" ไม่ได้รับการยืนยันภายในวันรับบริการ จึงหมดอายุแล้ว"},
    "notify.page_refused": {
        "en": "A page from {source} tried to read the card and was refused (not allowed). "
              "See the status page to allow it.",
        "th": "หน้าเว็บจาก {source} พยายามอ่านบัตรแต่ไม่ได้รับอนุญาต "
              "ดูรายละเอียดและอนุญาตได้ที่หน้าสถานะของโปรแกรม"},
    "notify.lan_refused": {
        "en": "A computer at {source} tried to read the card over the network and was "
              "refused. See the status page.",
        "th": "เครื่อง {source} พยายามอ่านบัตรผ่านเครือข่ายแต่ถูกปฏิเสธ ดูรายละเอียดที่หน้าสถานะ"},
    "notify.pcsc_stopped": {"en": "The smart card service (PC/SC) stopped",
                            "th": "บริการสมาร์ทการ์ด (PC/SC) หยุดทำงาน"},
    "msg.already_running": {"en": "Thai Card Agent is already running: look for its icon "
                                  "in the notification area.",
                            "th": "โปรแกรมอ่านบัตรเปิดอยู่แล้ว ดูไอคอนที่มุมจอ (แถบแจ้งเตือน)"},
    "msg.settings_saved": {"en": "Settings saved; the agent restarted with them.",
                           "th": "บันทึกการตั้งค่าแล้ว และเริ่มโปรแกรมใหม่ตามค่าที่ตั้ง"},
    "msg.settings_restart": {"en": "Settings saved; restart the agent to apply them.",
                             "th": "บันทึกการตั้งค่าแล้ว กรุณาเริ่มโปรแกรมอ่านบัตรใหม่เพื่อใช้ค่าใหม่"},
    "msg.headless": {"en": "The agent runs without a tray icon",
                     "th": "โปรแกรมทำงานต่อโดยไม่แสดงไอคอนที่มุมจอ"},
    "msg.copied": {"en": "Copied: {url}", "th": "คัดลอกแล้ว: {url}"},
    "msg.bundle_saved": {"en": "Support bundle saved (no card data, no token):\n{path}",
                         "th": "บันทึกไฟล์สำหรับฝ่ายสนับสนุนแล้ว (ไม่มีข้อมูลบัตรและ Token):\n{path}"},
    "msg.token_set": {"en": "NHSO token saved in the system keyring.",
                      "th": "บันทึก Token สปสช. ในที่เก็บรหัสผ่านของระบบแล้ว"},
    "msg.token_cleared": {"en": "NHSO token removed.", "th": "ลบ Token สปสช. แล้ว"},
    "msg.action_failed": {"en": "Could not do that: {error}", "th": "ทำรายการไม่สำเร็จ: {error}"},
    "dialog.token_prompt": {"en": "Paste the NHSO token of this hospital:",
                            "th": "วาง Token ของ สปสช. สำหรับหน่วยบริการนี้:"},
    "settings.port": {"en": "Port (127.0.0.1):", "th": "พอร์ต (127.0.0.1):"},
    "settings.origins": {"en": "Websites allowed to read cards (one origin per line):",
                         "th": "เว็บไซต์ที่อนุญาตให้อ่านบัตร (บรรทัดละหนึ่ง origin):"},
    "settings.locked": {"en": "Some settings are fixed by your IT administrator.",
                        "th": "การตั้งค่าบางรายการถูกกำหนดโดยผู้ดูแลระบบ"},
    "dialog.ok": {"en": "Save", "th": "บันทึก"},
    "dialog.cancel": {"en": "Cancel", "th": "ยกเลิก"},
}


def text(key: str, lang: str, **values: object) -> str:
    entry = TEXTS[key]
    template = entry.get(lang) or entry["en"]
    return template.format(**values) if values else template


def system_language(environ: dict[str, str] | None = None) -> str:
    """``th`` when the user's OS language is Thai, else ``en``."""
    env = os.environ if environ is None else environ
    if environ is None:
        own = osroom.current().ui_language()     # Windows: the UI language, not the locale
        if own:
            return own
    # POSIX precedence: LANGUAGE (a list), then LC_ALL, LC_MESSAGES, LANG.
    for var in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(var, "")
        if value:
            first = value.split(":")[0].lower()
            if first in ("c", "posix") or first.startswith("c."):
                continue
            return "th" if first.startswith("th") else "en"
    if environ is None:
        try:
            loc = locale.getlocale()[0] or ""
        except ValueError:
            loc = ""
        return "th" if loc.lower().startswith("th") else "en"
    return "en"


def resolve_language(choice: str | None, environ: dict[str, str] | None = None) -> str:
    """The language to show for a saved choice (``auto``, ``th``, ``en`` or nothing)."""
    return choice if choice in LANGUAGES else system_language(environ)
