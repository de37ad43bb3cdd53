#!/usr/bin/env python3
"""Writes the Group Policy templates (ADMX + ADML in English and Thai) for every value the
agent reads from ``HKLM\\Software\\Policies\\ThaiCardAgent``.

    python installer/windows/make_admx.py           # rewrite installer/windows/policy/
    python installer/windows/make_admx.py --check   # fail when the files are out of date

The policy names come from the settings engine's key tables (agent/config.py,
agent/nhso/settings.py, agent/lan/settings.py): a key the policy may fix gets a policy,
named as the registry value (``Port``, ``NhsoHcode``, ``LanListenerEnabled``). Its element
follows the key's coercion: true/false a checkbox policy (REG_DWORD 1/0), numbers a
decimal (REG_DWORD), lists a multi-line text (REG_MULTI_SZ), the fixed choices a drop-down
(REG_SZ), anything else a text box (REG_SZ). Only the texts below are written by hand; a
key without one stops the build, so a new setting cannot ship without its policy.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))

from agent.config import BACKENDS, LOG_LEVELS  # noqa: E402 - after the path to the checkout
from agent.config import TABLE as AGENT_TABLE  # noqa: E402 - after the path to the checkout
from agent.lan.settings import TABLE as LAN_TABLE  # noqa: E402 - after the path to the checkout
from agent.layered_settings import Key, KeyTable, to_bool, to_float, to_int  # noqa: E402 - same
from agent.nhso.settings import TABLE as NHSO_TABLE  # noqa: E402 - after the path to the checkout
from agent.nhso.settings import ZONES  # noqa: E402 - after the path to the checkout
from agent.osroom.windows import POLICY_KEY  # noqa: E402 - after the path to the checkout

OUT = HERE / "policy"
NAME = "ThaiCardAgent"
LANGUAGES = ("en-US", "th-TH")
NS = "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"
CATEGORIES = {"": ("Agent", "Thai Card Agent", "Thai Card Agent (โปรแกรมอ่านบัตรประชาชน)"),
              "nhso": ("Nhso", "NHSO claims", "การส่งเคลม สปสช."),
              "lanListener": ("Lan", "HIS servers on the LAN", "เซิร์ฟเวอร์ HIS ในเครือข่าย")}
CHOICES = {"backend": BACKENDS, "logLevel": LOG_LEVELS, "nhsoZone": tuple(ZONES)}

# policy key: (English name, Thai name, English explanation, Thai explanation).
TEXTS: dict[str, tuple[str, str, str, str]] = {
    "port": ("Port on 127.0.0.1", "พอร์ตบน 127.0.0.1",
             "TCP port the agent listens on (web pages expect 8189).",
             "พอร์ต TCP ที่โปรแกรมรอรับ (หน้าเว็บใช้ 8189)"),
    "allowedOrigins": ("Allowed web pages (origins)", "หน้าเว็บที่อนุญาต (origin)",
                       "One origin per line, e.g. https://authenservice.nhso.go.th. Replaces "
                       "the default list: keep the NHSO page in it.",
                       "หนึ่ง origin ต่อบรรทัด เช่น https://authenservice.nhso.go.th "
                       "ค่านี้แทนรายการเดิม ให้ใส่หน้า สปสช. ไว้ด้วย"),
    "originScopes": ("What each allowed page may do (scopes)",
                     "สิทธิ์ของแต่ละหน้าเว็บที่อนุญาต (scope)",
                     "origin=scope,scope; ... e.g. https://his.hospital.go.th=card,photo,claims. "
                     "Scopes: card, photo, events, nhso, claims. Replaces the default map: keep "
                     "the NHSO page in it.",
                     "origin=scope,scope; ... เช่น https://his.hospital.go.th=card,photo,claims "
                     "scope ได้แก่ card, photo, events, nhso, claims ค่านี้แทนค่าเดิม "
                     "ให้ใส่หน้า สปสช. ไว้ด้วย"),
    "defaultScopes": ("Scopes of other allowed pages", "สิทธิ์ของหน้าเว็บอื่นที่อนุญาต",
                      "Comma-separated scopes for allowed pages not in the scope map "
                      "(default: card, photo, events).",
                      "scope คั่นด้วยจุลภาค สำหรับหน้าเว็บที่อนุญาตแต่ไม่ได้กำหนดไว้ "
                      "(ค่าเริ่มต้น card, photo, events)"),
    "defaultTerminal": ("Default reader", "เครื่องอ่านบัตรหลัก",
                        "Reader name used when a page names none.",
                        "ชื่อเครื่องอ่านที่ใช้เมื่อหน้าเว็บไม่ระบุ"),
    "backend": ("Reader backend", "ชนิดเครื่องอ่าน",
                "pcsc: real readers; demo: a simulated card (training rooms); auto: PC/SC, "
                "else demo.", "pcsc: เครื่องอ่านจริง, demo: บัตรจำลอง (ห้องอบรม), auto: "
                "ใช้ PC/SC ถ้าไม่มีจึงใช้ demo"),
    "readPhoto": ("Read the photo", "อ่านรูปจากบัตร",
                  "Read the photo after the text fields (about 2 s).",
                  "อ่านรูปหลังข้อมูลตัวอักษร (ประมาณ 2 วินาที)"),
    "readTimeout": ("Read timeout (seconds)", "เวลารออ่านบัตร (วินาที)",
                    "Seconds a request waits for the card read in progress (1-300).",
                    "จำนวนวินาทีที่คำขอรอการอ่านบัตร (1-300)"),
    "heartbeatInterval": ("WebSocket heartbeat (seconds)", "ช่วงเวลา heartbeat (วินาที)",
                          "Seconds between heartbeat messages (1-300).",
                          "จำนวนวินาทีระหว่างข้อความ heartbeat (1-300)"),
    "logLevel": ("Log level", "ระดับการบันทึก log", "DEBUG, INFO, WARNING or ERROR.",
                 "DEBUG, INFO, WARNING หรือ ERROR"),
    "logDir": ("Log folder", "โฟลเดอร์ log", "Where agent.log is written.",
               "ตำแหน่งที่เขียน agent.log"),
    "nhsoHcode": ("Hospital code (hcode)", "รหัสหน่วยบริการ (hcode)",
                  "The 5-digit NHSO hospital code.", "รหัสหน่วยบริการ 5 หลักของ สปสช."),
    "nhsoSourceId": ("Source id", "รหัสระบบ (sourceId)", "The HIS's source id at NHSO.",
                     "รหัสระบบ HIS ที่ลงทะเบียนกับ สปสช."),
    "nhsoRecorderPid": ("Recorder citizen id", "เลขประจำตัวผู้บันทึก",
                        "The citizen id of the staff member recorded on claims.",
                        "เลขประจำตัวประชาชนของเจ้าหน้าที่ผู้บันทึกเคลม"),
    "nhsoZone": ("NHSO zone", "โซน สปสช.", "production or test.", "production หรือ test"),
    "nhsoBaseUrl": ("NHSO base URL (testing)", "URL ของ สปสช. (ทดสอบ)",
                    "One root for both NHSO services, for a test server; leave unset.",
                    "URL เดียวสำหรับบริการ สปสช. ทั้งสอง ใช้กับเซิร์ฟเวอร์ทดสอบเท่านั้น"),
    "nhsoRetentionDays": ("Keep sent claims (days)", "เก็บเคลมที่ส่งแล้ว (วัน)",
                          "Sent and failed claims are deleted after this many days (PDPA).",
                          "ลบเคลมที่ส่งแล้วหรือล้มเหลวเมื่อครบจำนวนวันนี้ (PDPA)"),
    "nhsoDueTime": ("Claims due time (HH:MM)", "เวลาครบกำหนดส่งเคลม (HH:MM)",
                    "Bangkok time after which unsent claims of the day are flagged.",
                    "เวลาที่เคลมของวันซึ่งยังไม่ส่งจะถูกแจ้งเตือน (เวลาไทย)"),
    "nhsoRequestTimeout": ("NHSO request timeout (s)", "เวลารอคำตอบ สปสช. (วินาที)",
                           "Seconds for one whole NHSO request.", "วินาทีต่อหนึ่งคำขอ"),
    "nhsoConnectTimeout": ("NHSO connect timeout (s)", "เวลารอเชื่อมต่อ สปสช. (วินาที)",
                           "Seconds to connect to NHSO.", "วินาทีในการเชื่อมต่อ"),
    "nhsoSenderConcurrency": ("Claims sent at once", "จำนวนเคลมที่ส่งพร้อมกัน",
                              "Claims sent in parallel (1-32).", "จำนวนเคลมที่ส่งพร้อมกัน (1-32)"),
    "nhsoRetryBase": ("First retry delay (s)", "รอส่งซ้ำครั้งแรก (วินาที)",
                      "Delay before the first retry, doubled each time.",
                      "เวลารอก่อนส่งซ้ำครั้งแรก เพิ่มเท่าตัวทุกครั้ง"),
    "nhsoRetryMax": ("Longest retry delay (s)", "รอส่งซ้ำนานสุด (วินาที)",
                     "Upper bound of the retry delay.", "เวลารอส่งซ้ำสูงสุด"),
    "nhsoInDoubtDelay": ("Wait before checking an unanswered claim (s)",
                         "รอก่อนตรวจเคลมที่ไม่ได้คำตอบ (วินาที)",
                         "Wait before asking NHSO whether an unanswered claim landed.",
                         "เวลารอก่อนถาม สปสช. ว่าเคลมที่ไม่ได้คำตอบถูกบันทึกหรือไม่"),
    "nhsoInDoubtRecheck": ("Second check of an unanswered claim (s)",
                           "ตรวจเคลมที่ไม่ได้คำตอบซ้ำครั้งที่สอง (วินาที)",
                           "When NHSO does not list an unanswered claim, ask once more this "
                           "many seconds later before sending it again (NHSO may record late).",
                           "เมื่อ สปสช. ยังไม่แสดงเคลมที่ไม่ได้คำตอบ ให้ถามซ้ำอีกครั้งหลังจาก"
                           "จำนวนวินาทีนี้ก่อนส่งใหม่ (สปสช. อาจบันทึกช้า)"),
    "nhsoTokenRetry": ("Retry after an invalid token (s)", "ส่งซ้ำหลัง Token ไม่ถูกต้อง (วินาที)",
                       "Longest delay after \"Invalid token.\" (retried sooner at first; a "
                       "new token wakes the sender).",
                       "เวลารอนานที่สุดหลังได้ \"Invalid token.\" (ช่วงแรกจะลองเร็วกว่านี้ "
                       "Token ใหม่จะปลุกการส่งทันที)"),
    "nhsoDueCheckInterval": ("Due check interval (s)", "ช่วงตรวจเคลมค้าง (วินาที)",
                             "How often unsent claims are checked against the due time.",
                             "ความถี่ในการตรวจเคลมที่ยังไม่ส่งเทียบกับเวลาครบกำหนด"),
    "nhsoCoverageCacheSeconds": ("Coverage cache (s)", "เก็บผลตรวจสิทธิ์ (วินาที)",
                                 "Seconds a coverage answer is reused for the same card.",
                                 "วินาทีที่ใช้ผลตรวจสิทธิ์ซ้ำสำหรับบัตรเดิม"),
    "nhsoAuthenCodeApi": ("Forward confirm-save to NHSO", "ส่ง confirm-save ไปยัง สปสช.",
                          "confirm-save asks NHSO's AuthenCode API for a code.",
                          "confirm-save ขอรหัสจาก AuthenCode API ของ สปสช."),
    "nhsoAuthenLookbackDays": ("Authen code look-back (days)", "ย้อนหาเลข Authen (วัน)",
                               "Days the latest authen code is looked up (1-31).",
                               "จำนวนวันที่ย้อนหาเลข Authen ล่าสุด (1-31)"),
    "nhsoVisitSourceUrl": ("Kiosk: the HIS's visit source", "KIOSK: แหล่งรายการรับบริการของ HIS",
                           "The HIS's https:// endpoint listing a patient's visits of a day "
                           "(docs/kiosk.md); its key stays in each user's keyring.",
                           "ที่อยู่ https:// ของ HIS ที่ให้รายการรับบริการของผู้ป่วยในวันนั้น "
                           "(กุญแจเก็บในที่เก็บรหัสผ่านของผู้ใช้)"),
    "nhsoVisitSourceTimeout": ("Kiosk: visit source time-out (seconds)",
                               "KIOSK: เวลารอแหล่งรายการรับบริการ (วินาที)",
                               "Seconds to wait for the visit source (at most 60).",
                               "จำนวนวินาทีที่รอแหล่งรายการรับบริการ (ไม่เกิน 60)"),
    "lanListenerEnabled": ("Turn on the LAN listener", "เปิดการรับคำขอจาก LAN",
                           "Let listed HIS servers read the card over the LAN (docs/admin.md: "
                           "risks).", "ให้เซิร์ฟเวอร์ HIS ที่ระบุอ่านบัตรผ่าน LAN (ดูความเสี่ยง)"),
    "lanListenerAddresses": ("This PC's LAN addresses", "ที่อยู่ IP ของเครื่องนี้",
                             "One address per line to listen on (never 0.0.0.0).",
                             "หนึ่งที่อยู่ต่อบรรทัด (ห้าม 0.0.0.0)"),
    "lanListenerPort": ("LAN port", "พอร์ตบน LAN", "Port of the LAN listener (8189).",
                        "พอร์ตสำหรับ LAN (8189)"),
    "lanListenerClients": ("HIS servers allowed", "เซิร์ฟเวอร์ HIS ที่อนุญาต",
                           "One server address or network per line.",
                           "หนึ่งที่อยู่หรือเครือข่ายต่อบรรทัด"),
    "lanListenerPhoto": ("Photo over the LAN", "ส่งรูปผ่าน LAN",
                         "Let readImageFlag=true return the photo.",
                         "อนุญาตให้ readImageFlag=true ส่งรูป"),
    "lanListenerRatePerMinute": ("Requests per minute per server", "คำขอต่อนาทีต่อเซิร์ฟเวอร์",
                                 "Rate limit per HIS server address.",
                                 "จำกัดจำนวนคำขอต่อที่อยู่เซิร์ฟเวอร์"),
}


@dataclass(frozen=True)
class Policy:
    key: str            # the policy key as the settings engine matches it: nhsoHcode
    value_name: str     # the registry value: NhsoHcode
    kind: str           # boolean, decimal, list, enum, text
    category: str


def policy_key(table: KeyTable, key: Key) -> str:
    prefix = table.policy_prefix
    return prefix + key.json[:1].upper() + key.json[1:] if prefix else key.json


def policies() -> list[Policy]:
    """Every key the admin policy may fix, from the three key tables."""
    out = []
    for table in (AGENT_TABLE, NHSO_TABLE, LAN_TABLE):
        for key in table.keys:
            if not key.policy:
                continue
            name = policy_key(table, key)
            if key.coerce is to_bool:
                kind = "boolean"
            elif key.coerce in (to_int, to_float):
                kind = "decimal"
            elif name in CHOICES:
                kind = "enum"
            elif "list" in key.kind:
                kind = "list"
            else:
                kind = "text"
            out.append(Policy(name, name[:1].upper() + name[1:], kind, table.policy_prefix))
    return out


def _admx(items: list[Policy]) -> str:
    lines = ['<?xml version="1.0" encoding="utf-8"?>',
             f'<policyDefinitions revision="1.0" schemaVersion="1.0" xmlns="{NS}">',
             "  <policyNamespaces>",
             f'    <target prefix="thaicardagent" namespace="{NAME}.Policies"/>',
             "  </policyNamespaces>",
             '  <resources minRequiredRevision="1.0"/>',
             "  <supportedOn>", "    <definitions>",
             '      <definition name="SUPPORTED_AGENT" displayName="$(string.SUPPORTED_AGENT)"/>',
             "    </definitions>", "  </supportedOn>", "  <categories>"]
    for prefix, (cat, _en, _th) in CATEGORIES.items():
        tag = f'    <category name="{cat}" displayName="$(string.Cat_{cat})"'
        lines.append(tag + ('><parentCategory ref="Agent"/></category>' if prefix else "/>"))
    lines += ["  </categories>", "  <policies>"]
    key = escape(POLICY_KEY)
    for p in items:
        head = (f'    <policy name="{p.value_name}" class="Machine" '
                f'displayName="$(string.{p.value_name})" '
                f'explainText="$(string.{p.value_name}_Explain)" key="{key}"')
        cat = CATEGORIES[p.category][0]
        inner = [f'      <parentCategory ref="{cat}"/>',
                 '      <supportedOn ref="SUPPORTED_AGENT"/>']
        if p.kind == "boolean":
            lines.append(head + f' valueName="{p.value_name}">')
            inner += ['      <enabledValue><decimal value="1"/></enabledValue>',
                      '      <disabledValue><decimal value="0"/></disabledValue>']
        else:
            lines.append(head + f' presentation="$(presentation.{p.value_name})">')
            inner.append("      <elements>")
            ident = f'id="{p.value_name}" valueName="{p.value_name}"'
            if p.kind == "decimal":
                inner.append(f'        <decimal {ident} maxValue="2000000000"/>')
            elif p.kind == "list":
                inner.append(f'        <multiText {ident}/>')
            elif p.kind == "enum":
                inner.append(f'        <enum {ident}>')
                for choice in CHOICES[p.key]:
                    inner.append(f'          <item displayName="$(string.{p.value_name}_{choice})">'
                                 f"<value><string>{escape(choice)}</string></value></item>")
                inner.append("        </enum>")
            else:
                inner.append(f'        <text {ident}/>')
            inner.append("      </elements>")
        lines += [*inner, "    </policy>"]
    lines += ["  </policies>", "</policyDefinitions>", ""]
    return "\n".join(lines)


def _adml(items: list[Policy], thai: bool) -> str:
    def string(ident: str, text: str) -> str:
        return f'      <string id="{ident}">{escape(text)}</string>'

    title = "Thai Card Agent" + (" (โปรแกรมอ่านบัตรประชาชน)" if thai else "")
    strings = [string("SUPPORTED_AGENT", "Thai Card Agent 0.1 or later"
                      if not thai else "Thai Card Agent รุ่น 0.1 ขึ้นไป")]
    for _prefix, (cat, en, th) in CATEGORIES.items():
        strings.append(string(f"Cat_{cat}", th if thai else en))
    presentations = []
    for p in items:
        if p.key not in TEXTS:
            raise SystemExit(f"no policy text for {p.key}: add it to TEXTS in {__file__}")
        en_name, th_name, en_explain, th_explain = TEXTS[p.key]
        name, explain = (th_name, th_explain) if thai else (en_name, en_explain)
        strings.append(string(p.value_name, name))
        strings.append(string(f"{p.value_name}_Explain",
                              f"{explain}\n\n{p.value_name} (HKLM\\{POLICY_KEY})"))
        label = quoteattr(p.value_name)
        if p.kind == "enum":
            strings += [string(f"{p.value_name}_{c}", c) for c in CHOICES[p.key]]
        body = {"decimal": f'<decimalTextBox refId={label}>{escape(name)}</decimalTextBox>',
                "list": f'<multiTextBox refId={label}>{escape(name)}</multiTextBox>',
                "enum": f'<dropdownList refId={label} noSort="true">{escape(name)}'
                        "</dropdownList>",
                "text": f'<textBox refId={label}><label>{escape(name)}</label></textBox>',
                }.get(p.kind)
        if body:
            presentations.append(f'      <presentation id="{p.value_name}">{body}</presentation>')
    return "\n".join([
        '<?xml version="1.0" encoding="utf-8"?>',
        f'<policyDefinitionResources revision="1.0" schemaVersion="1.0" xmlns="{NS}">',
        f"  <displayName>{escape(title)}</displayName>",
        f"  <description>{escape(title)}</description>",
        "  <resources>", "    <stringTable>", *strings, "    </stringTable>",
        "    <presentationTable>", *presentations, "    </presentationTable>",
        "  </resources>", "</policyDefinitionResources>", ""])


def render() -> dict[Path, str]:
    """The files, relative to installer/windows/policy/."""
    items = policies()
    return {Path(f"{NAME}.admx"): _admx(items),
            Path("en-US") / f"{NAME}.adml": _adml(items, thai=False),
            Path("th-TH") / f"{NAME}.adml": _adml(items, thai=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare, write nothing")
    args = parser.parse_args(argv)
    stale = []
    for rel, text in render().items():
        path = OUT / rel
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        stale.append(str(rel))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if args.check and stale:
        print(f"out of date: {', '.join(stale)}; run {Path(__file__).name}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
