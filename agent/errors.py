"""Typed errors with stable codes.

Every failure the agent reports to a caller (CLI exit, HTTP body, WebSocket event) carries
one of the codes in ``ERROR_TABLE``. Codes are part of the public contract: never rename
one, only add. ``docs/errors.md`` is generated from this table and checked by a test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ErrorInfo:
    code: str
    http_status: int
    exit_code: int
    message_en: str
    message_th: str


# code -> (HTTP status, CLI exit code, English, Thai)
ERROR_TABLE: dict[str, ErrorInfo] = {
    info.code: info
    for info in (
        ErrorInfo("no_reader", 418, 3, "No smart card reader is connected.",
                  "ไม่พบเครื่องอ่านบัตร กรุณาเสียบเครื่องอ่านบัตร"),
        ErrorInfo("reader_not_found", 404, 3, "No reader with that name.",
                  "ไม่พบเครื่องอ่านบัตรตามชื่อที่ระบุ"),
        ErrorInfo("no_card", 500, 4, "No card in the reader.",
                  "ไม่พบบัตรในเครื่องอ่าน กรุณาเสียบบัตรประชาชน"),
        ErrorInfo("card_removed", 500, 5, "The card was removed during the read.",
                  "บัตรถูกดึงออกระหว่างการอ่าน กรุณาเสียบบัตรใหม่"),
        ErrorInfo("not_thai_id", 500, 6, "The card is not a Thai national ID card.",
                  "บัตรนี้ไม่ใช่บัตรประจำตัวประชาชนไทย"),
        ErrorInfo("apdu_failed", 500, 7, "The card refused a command.",
                  "บัตรตอบกลับผิดพลาด กรุณาเสียบบัตรใหม่"),
        ErrorInfo("card_data_invalid", 500, 7, "The card returned data that cannot be decoded.",
                  "ข้อมูลในบัตรไม่ถูกต้อง"),
        ErrorInfo("reader_busy", 503, 8, "The reader is in use by another program.",
                  "เครื่องอ่านบัตรกำลังถูกใช้งานโดยโปรแกรมอื่น"),
        ErrorInfo("read_timeout", 504, 8, "The card did not answer in time.",
                  "บัตรไม่ตอบสนองภายในเวลาที่กำหนด"),
        ErrorInfo("pcsc_unavailable", 503, 9, "The smart card service (PC/SC) is not running.",
                  "บริการสมาร์ทการ์ด (PC/SC) ไม่ทำงาน"),
        ErrorInfo("reader_error", 500, 10, "The reader reported an error.",
                  "เครื่องอ่านบัตรเกิดข้อผิดพลาด"),
        ErrorInfo("bad_request", 400, 2, "The request is not valid.", "คำขอไม่ถูกต้อง"),
        ErrorInfo("internal_error", 500, 1, "Unexpected internal error.",
                  "เกิดข้อผิดพลาดภายในโปรแกรม"),
        ErrorInfo("nhso_token_missing", 503, 11, "No NHSO token is set on this computer.",
                  "ยังไม่ได้ตั้งค่า Token ของ สปสช. ในเครื่องนี้"),
        ErrorInfo("nhso_token_invalid", 502, 11, "NHSO refused the token (Invalid token.).",
                  "สปสช. ไม่ยอมรับ Token (Token ไม่ถูกต้องหรือหมดอายุ)"),
        ErrorInfo("nhso_not_configured", 503, 11,
                  "NHSO settings are incomplete (hcode, sourceId or recorderPid).",
                  "ยังตั้งค่าการเชื่อมต่อ สปสช. ไม่ครบ (รหัสหน่วยบริการ, sourceId หรือ recorderPid)"),
        ErrorInfo("nhso_unavailable", 503, 13, "NHSO could not be reached or did not answer.",
                  "ติดต่อระบบ สปสช. ไม่ได้ หรือระบบไม่ตอบสนอง"),
        ErrorInfo("nhso_rejected", 502, 13, "NHSO rejected the request.",
                  "สปสช. ปฏิเสธคำขอ"),
        ErrorInfo("nhso_unverified", 502, 13,
                  "The NHSO call behind this function is not publicly documented (unverified) "
                  "and it did not succeed.",
                  "บริการของ สปสช. ที่ใช้ในฟังก์ชันนี้ยังไม่มีเอกสารเผยแพร่ (ยังไม่ได้ยืนยัน) "
                  "และเรียกใช้ไม่สำเร็จ"),
        ErrorInfo("compat_unsupported", 400, 2,
                  "Thai Card Agent does not offer this function of the old NHSO agent: what it "
                  "does is not public. Do not retry; ask the HIS vendor to use confirm-save.",
                  "โปรแกรมนี้ไม่รองรับคำสั่งนี้ของโปรแกรม สปสช. เดิม เนื่องจากไม่มีข้อมูลเผยแพร่ว่าทำงานอย่างไร "
                  "ไม่ต้องลองใหม่ กรุณาแจ้งผู้พัฒนาระบบ HIS ให้ใช้ confirm-save"),
        ErrorInfo("claim_not_found", 404, 2, "No claim with that id.",
                  "ไม่พบรายการปิดสิทธิตามรหัสที่ระบุ"),
        ErrorInfo("claim_conflict", 409, 2,
                  "That transactionId is already used by a different claim.",
                  "transactionId นี้ถูกใช้กับรายการปิดสิทธิอื่นแล้ว"),
        ErrorInfo("visit_not_found", 404, 2, "No visit with that id.",
                  "ไม่พบรายการรับบริการที่รอยืนยันตามรหัสที่ระบุ"),
        ErrorInfo("visit_conflict", 409, 2,
                  "That transactionId is already used by a different visit.",
                  "transactionId นี้ถูกใช้กับรายการรับบริการอื่นแล้ว"),
        ErrorInfo("visit_closed", 409, 2,
                  "The visit can no longer be confirmed (cancelled or expired).",
                  "รายการรับบริการนี้ยืนยันไม่ได้แล้ว (ถูกยกเลิกหรือหมดเวลา) กรุณาติดต่อเจ้าหน้าที่"),
        ErrorInfo("visit_source_unavailable", 503, 13,
                  "The hospital's visit list (the visit source) could not be asked.",
                  "ติดต่อระบบรายการรับบริการของโรงพยาบาลไม่ได้ กรุณาติดต่อเจ้าหน้าที่"),
        ErrorInfo("browser_not_found", 404, 17,
                  "No Chromium-based browser (Edge, Chrome, Chromium) was found for the kiosk.",
                  "ไม่พบเบราว์เซอร์ Edge, Chrome หรือ Chromium สำหรับเปิดหน้าจอ KIOSK"),
        ErrorInfo("visit_card_mismatch", 409, 4,
                  "The card in the reader is not the card of this visit's patient.",
                  "บัตรในเครื่องอ่านไม่ใช่บัตรของผู้รับบริการรายนี้"),
        ErrorInfo("claim_same_visit", 409, 2,
                  "A claim for the same visit (patient, hospital, service and service time) "
                  "exists under another transactionId; say newVisit=true if this is "
                  "another visit.",
                  "มีรายการปิดสิทธิของการรับบริการครั้งนี้แล้ว (ผู้ป่วย หน่วยบริการ บริการ และ"
                  "เวลาเดียวกัน) ภายใต้ transactionId อื่น หากเป็นการรับบริการครั้งใหม่ให้ระบุ "
                  "newVisit=true"),
        ErrorInfo("claim_not_in_review", 409, 2,
                  "That claim is not waiting for a review.",
                  "รายการปิดสิทธินี้ไม่ได้รอการตรวจสอบ"),
        ErrorInfo("nhso_empty_reply", 503, 13,
                  "NHSO answered with an empty body (usually an expired token).",
                  "สปสช. ตอบกลับว่างเปล่า (มักเกิดจาก Token หมดอายุ)"),
        ErrorInfo("nhso_proxy_page", 503, 13,
                  "A web page came back instead of NHSO's answer (a proxy or firewall of "
                  "the network answered).",
                  "ได้รับหน้าเว็บแทนคำตอบของ สปสช. (พร็อกซีหรือไฟร์วอลล์ของเครือข่ายตอบแทน)"),
        ErrorInfo("nhso_tls_failed", 503, 13,
                  "The secure connection to NHSO failed (certificate or protocol); nothing "
                  "was sent.",
                  "เชื่อมต่อแบบปลอดภัยกับ สปสช. ไม่สำเร็จ (ใบรับรองหรือโปรโตคอล) "
                  "ยังไม่มีการส่งข้อมูล"),
        ErrorInfo("keyring_unavailable", 503, 12,
                  "The system keyring (credential store) is not available.",
                  "ไม่สามารถใช้ที่เก็บรหัสผ่านของระบบ (keyring) ได้"),
        ErrorInfo("keyring_insecure", 503, 12,
                  "The active keyring backend does not protect secrets; the token is not stored.",
                  "ที่เก็บรหัสผ่านที่ใช้อยู่ไม่ปลอดภัย จึงไม่บันทึก Token"),
        ErrorInfo("outbox_unavailable", 503, 14,
                  "The claim outbox (local database) cannot be used.",
                  "ไม่สามารถใช้ฐานข้อมูลคิวส่งปิดสิทธิในเครื่องได้"),
        ErrorInfo("not_found", 404, 2, "No such endpoint.", "ไม่พบบริการตามที่เรียก"),
        ErrorInfo("method_not_allowed", 405, 2, "This method is not allowed on this endpoint.",
                  "ไม่รองรับวิธีเรียกนี้"),
        ErrorInfo("invalid_json", 400, 2, "The request body is not valid JSON.",
                  "ข้อมูลที่ส่งมาไม่ใช่ JSON ที่ถูกต้อง"),
        ErrorInfo("payload_too_large", 413, 2, "The request body is too large.",
                  "ข้อมูลที่ส่งมามีขนาดใหญ่เกินไป"),
        ErrorInfo("unsupported_media_type", 415, 2,
                  "Send the request body as JSON (Content-Type: application/json).",
                  "กรุณาส่งข้อมูลเป็น JSON (Content-Type: application/json)"),
        ErrorInfo("host_not_allowed", 421, 2,
                  "Wrong Host header: call the agent as 127.0.0.1 or localhost.",
                  "Host ไม่ถูกต้อง กรุณาเรียกโปรแกรมผ่าน 127.0.0.1 หรือ localhost"),
        ErrorInfo("origin_not_allowed", 403, 2,
                  "This web page (origin) is not allowed to use the card reader agent.",
                  "หน้าเว็บนี้ไม่ได้รับอนุญาตให้ใช้โปรแกรมอ่านบัตร"),
        ErrorInfo("scope_denied", 403, 2,
                  "This web page is allowed, but not for this function (ask IT to grant it).",
                  "หน้าเว็บนี้ได้รับอนุญาต แต่ไม่ได้รับสิทธิ์ใช้ฟังก์ชันนี้ (กรุณาติดต่อฝ่าย IT)"),
        ErrorInfo("too_many_requests", 429, 2,
                  "Too many connections or requests from this caller at once; try again.",
                  "มีการเชื่อมต่อหรือคำขอจากผู้เรียกนี้พร้อมกันมากเกินไป กรุณาลองใหม่"),
        ErrorInfo("request_timeout", 408, 2, "The request was not sent in time.",
                  "ส่งคำขอไม่ครบภายในเวลาที่กำหนด"),
        ErrorInfo("photo_unavailable", 404, 7, "The card's photo could not be read.",
                  "อ่านรูปถ่ายจากบัตรไม่ได้"),
        ErrorInfo("lan_client_not_allowed", 403, 2,
                  "This computer is not on the agent's list of HIS servers (lan-listener "
                  "clients).",
                  "เครื่องนี้ไม่อยู่ในรายชื่อเซิร์ฟเวอร์ HIS ที่อนุญาตให้อ่านบัตรผ่านเครือข่าย"),
        ErrorInfo("lan_key_invalid", 401, 2,
                  "The X-Thaicard-Key header is missing or wrong.",
                  "ไม่มีรหัสสำหรับเชื่อมต่อ (X-Thaicard-Key) หรือรหัสไม่ถูกต้อง"),
        ErrorInfo("rate_limited", 429, 2, "Too many requests; wait a moment and try again.",
                  "มีคำขอมากเกินไป กรุณารอสักครู่แล้วลองใหม่"),
        ErrorInfo("setting_locked", 403, 16,
                  "The admin policy fixes this setting; ask IT to change the policy.",
                  "การตั้งค่านี้ถูกกำหนดโดยนโยบายของผู้ดูแลระบบ กรุณาแจ้งฝ่ายไอทีให้แก้ไขนโยบาย"),
        ErrorInfo("port_in_use", 500, 15,
                  "The agent's port is already in use: another card agent is probably running.",
                  "พอร์ตของโปรแกรมถูกใช้งานอยู่ อาจมีโปรแกรมอ่านบัตรอีกตัวทำงานอยู่แล้ว"),
        ErrorInfo("config_invalid", 500, 16, "The configuration is not valid.",
                  "การตั้งค่าไม่ถูกต้อง"),
        ErrorInfo("card_unresponsive", 500, 5,
                  "The card does not answer: insert it chip first, chip facing up.",
                  "บัตรไม่ตอบสนอง กรุณาเสียบบัตรใหม่ โดยหันด้านชิปขึ้นและเสียบด้านชิปเข้าก่อน"),
        ErrorInfo("read_interrupted", 503, 8,
                  "Another program kept resetting the card during the read: close programs "
                  "that use the card reader, then try again.",
                  "โปรแกรมอื่นรบกวนการอ่านบัตรซ้ำหลายครั้ง กรุณาปิดโปรแกรมอื่นที่ใช้เครื่องอ่านบัตร "
                  "แล้วลองใหม่"),
        ErrorInfo("laser_unavailable", 404, 7,
                  "This card has no readable laser id (cards issued before 2015 have none).",
                  "อ่านเลขหลังบัตร (Laser ID) จากบัตรนี้ไม่ได้ (บัตรที่ออกก่อนปี 2558 ไม่มีข้อมูลนี้)"),
    )
}


class AgentError(Exception):
    """An error with a stable code from ``ERROR_TABLE``."""

    code = "internal_error"

    def __init__(self, detail: str | None = None, *, code: str | None = None) -> None:
        if code is not None:
            self.code = code
        if self.code not in ERROR_TABLE:
            raise ValueError(f"unknown error code {self.code!r}")
        self.detail = detail
        super().__init__(detail or self.info.message_en)

    @property
    def info(self) -> ErrorInfo:
        return ERROR_TABLE[self.code]

    @property
    def message_th(self) -> str:
        return self.info.message_th

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.info.message_en,
               "message_th": self.info.message_th}
        if self.detail:
            out["detail"] = self.detail
        return out


class NoReader(AgentError):
    code = "no_reader"


class ReaderNotFound(AgentError):
    code = "reader_not_found"


class NoCard(AgentError):
    code = "no_card"


class CardRemoved(AgentError):
    code = "card_removed"


class NotThaiIdCard(AgentError):
    code = "not_thai_id"


class ApduFailed(AgentError):
    code = "apdu_failed"

    def __init__(self, sw: int, step: str) -> None:
        self.sw = sw
        self.step = step
        super().__init__(f"{step}: status word {sw:04X}")


class CardDataInvalid(AgentError):
    code = "card_data_invalid"


class ReaderBusy(AgentError):
    code = "reader_busy"


class ReadTimeout(AgentError):
    code = "read_timeout"


class PcscUnavailable(AgentError):
    code = "pcsc_unavailable"


class ReaderError(AgentError):
    code = "reader_error"


class CardUnresponsive(AgentError):
    code = "card_unresponsive"


class ReadInterrupted(AgentError):
    code = "read_interrupted"


class CardReset(ReadInterrupted):
    """Another program reset the card or broke our transaction: the read starts again from
    the SELECT (the core does, a bounded number of times, then answers read_interrupted)."""


class LaserUnavailable(AgentError):
    code = "laser_unavailable"


class NotFound(AgentError):
    code = "not_found"


class BadRequest(AgentError):
    code = "bad_request"


class PortInUse(AgentError):
    code = "port_in_use"


class ScopeDenied(AgentError):
    code = "scope_denied"


def error_table_markdown() -> str:
    """The one table of codes, for docs/errors.md."""
    lines = [
        "| code | HTTP | CLI exit | English | ไทย |",
        "|---|---|---|---|---|",
    ]
    for info in ERROR_TABLE.values():
        lines.append(f"| `{info.code}` | {info.http_status} | {info.exit_code} | "
                     f"{info.message_en} | {info.message_th} |")
    return "\n".join(lines) + "\n"


class NhsoTokenMissing(AgentError):
    code = "nhso_token_missing"


class NhsoTokenInvalid(AgentError):
    code = "nhso_token_invalid"


class NhsoNotConfigured(AgentError):
    code = "nhso_not_configured"


class NhsoUnavailable(AgentError):
    code = "nhso_unavailable"
    # True when the request may have reached NHSO (the claim must be checked, not resent).
    in_doubt = False


class NhsoRejected(AgentError):
    code = "nhso_rejected"


class SettingLocked(AgentError):
    code = "setting_locked"


class CompatUnsupported(AgentError):
    code = "compat_unsupported"


class NhsoUnverified(AgentError):
    code = "nhso_unverified"


class ClaimNotFound(AgentError):
    code = "claim_not_found"


class ClaimConflict(AgentError):
    code = "claim_conflict"


class VisitNotFound(AgentError):
    code = "visit_not_found"


class VisitConflict(AgentError):
    code = "visit_conflict"


class VisitClosed(AgentError):
    code = "visit_closed"


class VisitSourceUnavailable(AgentError):
    code = "visit_source_unavailable"


class BrowserNotFound(AgentError):
    code = "browser_not_found"


class VisitCardMismatch(AgentError):
    code = "visit_card_mismatch"
class ClaimSameVisit(AgentError):
    code = "claim_same_visit"

    def __init__(self, detail: str, *, existing: dict[str, str]) -> None:
        self.existing = existing
        super().__init__(detail)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "existing": self.existing}


class ClaimNotInReview(AgentError):
    code = "claim_not_in_review"


class NhsoEmptyReply(NhsoUnavailable):
    code = "nhso_empty_reply"


class NhsoProxyPage(NhsoUnavailable):
    code = "nhso_proxy_page"


class NhsoTlsFailed(NhsoUnavailable):
    code = "nhso_tls_failed"


class KeyringUnavailable(AgentError):
    code = "keyring_unavailable"


class KeyringInsecure(AgentError):
    code = "keyring_insecure"


class OutboxUnavailable(AgentError):
    code = "outbox_unavailable"


if __name__ == "__main__":  # python -m agent.errors > docs/errors.md
    print("# Error codes\n\nEvery error the agent reports (CLI exit, HTTP body, WebSocket "
          "`card.error`) carries one of these stable codes. Generated from "
          "`agent/errors.py`: `python -m agent.errors > docs/errors.md`.\n")
    print(error_table_markdown(), end="")
