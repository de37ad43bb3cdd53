"""The kiosk page (/kiosk) in real headless Chromium: the patient's card confirms today's
visits against the NHSO contract server (a process, testrig/nhso_server.py).

The agent runs in this process (so the test inserts and pulls demo cards); Chromium loads
the agent's own page over real HTTP and WebSocket. Every state is kept as a screenshot
under test-output/kiosk/, and every EP code on screen is checked against what the contract
server issued.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from agent.assembly import NhsoParts
from agent.card.demo import demo_profile
from agent.nhso.routes import NHSO_SERVICE
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from agent.readers.demo import DEMO_READER, demo_card
from testrig.nhso_support import (
    HCODE,
    RECORDER_PID,
    SOURCE_ID,
    TOKEN,
    MemoryKeyring,
    VisitSourceProc,
    claim_body,
    http,
    start_contract_server,
)
from tests.api_support import ROOT, Agent, start_agent
from tests.browser_support import Chromium, Page, browser_available

pytestmark = pytest.mark.browser

OUTPUT = ROOT / "test-output" / "kiosk"
PATIENT = demo_profile(0).text
OTHER = demo_profile(1).text

missing = browser_available()
if missing and os.environ.get("CI"):
    raise RuntimeError(f"browser tests cannot run in CI: {missing}")
if missing:
    pytest.skip(missing, allow_module_level=True)


@pytest.fixture
def contract_server(tmp_path: Path) -> Any:
    proc = start_contract_server(dict(os.environ), tmp_path / "nhso-server.log")
    try:
        yield proc
    finally:
        proc.kill()


async def start_kiosk(aiohttp_client: Any, tmp_path: Path, contract_server: Any,
                      keyring: MemoryKeyring | None = None, **settings: Any) -> Agent:
    nhso = load_settings(
        config_dir=tmp_path / "config", data_dir=tmp_path / "data", env={},
        site_path=tmp_path / "no-site.json", base_url=contract_server.url, hcode=HCODE,
        source_id=SOURCE_ID, recorder_pid=RECORDER_PID, request_timeout=5.0,
        retry_base=0.05, retry_max=0.5, **settings)
    keyring = keyring or MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    return await start_agent(aiohttp_client, insert=False,
                             nhso=NhsoParts(nhso, TokenStore(keyring)))


@pytest.fixture
async def browser(tmp_path: Path) -> Any:
    workdir = tmp_path / "browser"
    workdir.mkdir()
    chromium = Chromium(workdir, public_port=9, hosts=["unused.example.test"])
    await chromium.start({**os.environ, "HOME": str(workdir / "home")})
    try:
        yield chromium
    finally:
        await chromium.close()


@pytest.fixture
async def kiosk(aiohttp_client: Any, tmp_path: Path, contract_server: Any,
                browser: Chromium) -> Any:
    agent = await start_kiosk(aiohttp_client, tmp_path, contract_server)
    return agent, browser, contract_server


async def open_kiosk(agent: Agent, browser: Chromium, query: str = "") -> Page:
    page = await browser.open(f"http://127.0.0.1:{agent.port}/kiosk{query}",
                              await browser.new_context())
    # What the patient would be offered to print is recorded instead of a print dialog.
    await page.evaluate("window.print = () => { window.printed = (window.printed || 0) + 1; }")
    await state(page, "idle")
    await page.wait_for("document.getElementById('connection').textContent === ''")
    return page


async def state(page: Page, name: str, reason: str = "") -> None:
    try:
        await _state(page, name, reason)
    except AssertionError:
        raise AssertionError(f"{name}/{reason} not reached: " + json.dumps(await page.evaluate(
            "({state: document.body.dataset.state, reason: document.body.dataset.reason, "
            "text: document.body.innerText})"), ensure_ascii=False)) from None


async def _state(page: Page, name: str, reason: str = "") -> None:
    await page.wait_for(f"document.body.dataset.state === {json.dumps(name)}"
                        + (f" && document.body.dataset.reason === {json.dumps(reason)}"
                           if reason else ""), timeout=45)


async def shot(page: Page, name: str) -> None:
    await page.screenshot(OUTPUT / f"{name}.png")


async def register(agent: Agent, n: int, pid: str = PATIENT.citizen_id) -> dict[str, Any]:
    body = {**claim_body(n, pid=pid), "label": f"ห้องตรวจ {n}, 09:4{n}"}
    resp = await agent.client.post("/v1/visits", json=body)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def issued(server: Any) -> dict[str, str]:
    """What the contract server (another process) recorded: transactionId -> EP code."""
    status, out = await asyncio.to_thread(http, "GET", server.url + "/_control/state")
    assert status == 200
    return {i["transactionId"]: i["authenCode"] for i in out["issued"]}


async def shown_text(page: Page) -> str:
    return await page.evaluate("document.body.innerText")


async def insert(agent: Agent, page: Page, variant: int = 0, *, capture: str = "") -> None:
    """Insert a demo card; with ``capture``, the read is slowed until the reading state
    is on screen and photographed, then let go."""
    if capture:
        agent.backend.apdu_delay = 0.5
    agent.backend.insert(DEMO_READER, demo_card(variant))
    if capture:
        await state(page, "reading")
        await shot(page, capture)
        agent.backend.apdu_delay = 0.0


async def check_privacy(page: Page, text: Any) -> None:
    body = await shown_text(page)
    assert text.citizen_id not in body
    for part in ("ถนนทดสอบ", "ตำบลตัวอย่าง", "หมู่ที่ 9"):
        assert part not in body


async def test_one_visit_confirmed_with_the_code_and_a_slip(kiosk):
    agent, browser, server = kiosk
    visit = await register(agent, 1)
    page = await open_kiosk(agent, browser)
    assert "กรุณาเสียบบัตรประชาชน" in await shown_text(page)
    await shot(page, "01-idle")
    await insert(agent, page, capture="02-reading")
    await state(page, "visits")
    await page.wait_for("document.getElementById('photo').naturalWidth > 0")
    body = await shown_text(page)
    assert PATIENT.name_th.first in body and PATIENT.name_th.last not in body
    assert visit["label"] in body
    cid = PATIENT.citizen_id
    assert f"{cid[0]}-xxxx-xxxxx-xx-{cid[12]}" in body
    await check_privacy(page, PATIENT)
    await shot(page, "03-patient-one-visit")
    # Keyboard: the confirm button has the focus; Enter presses it.
    assert await page.evaluate("document.activeElement.classList.contains('confirm')")
    for kind in ("keyDown", "keyUp"):
        await browser.send("Input.dispatchKeyEvent", {
            "type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13,
            **({"text": "\r"} if kind == "keyDown" else {})}, session=page.session)
    await state(page, "done")
    code = await page.evaluate("document.querySelector('[data-testid=claim-code]').textContent")
    assert code and code == (await issued(server))[visit["transactionId"]]
    assert "กรุณาดึงบัตรออก" in await shown_text(page)
    await shot(page, "04-confirmed-code")
    await page.evaluate("document.querySelector('.print').click()")
    assert await page.evaluate("window.printed") == 1
    slip = await page.evaluate("document.getElementById('slip').innerText")
    assert code in slip and cid not in slip
    await browser.send("Emulation.setEmulatedMedia", {"media": "print"}, session=page.session)
    await shot(page, "05-print-slip-58mm")
    await browser.send("Emulation.setEmulatedMedia", {"media": ""}, session=page.session)
    await agent.remove()
    await state(page, "idle")
    body = await shown_text(page)
    assert PATIENT.name_th.first not in body and code not in body
    assert await page.evaluate("document.getElementById('slip').innerText") == ""
    confirmed = await agent.get_json(f"/v1/visits/{visit['id']}")
    assert confirmed["status"] == "confirmed"
    # The same card again (a lost slip): the code again, nothing sent again.
    await insert(agent, page)
    await state(page, "done")
    again = await page.evaluate("document.querySelector('[data-testid=claim-code]')"
                                ".textContent")
    assert again == code and len(await issued(server)) == 1
    await shot(page, "16-card-again-code-again")
    await agent.remove()
    await state(page, "idle")


async def test_two_visits_one_tap_each_in_english(kiosk):
    agent, browser, server = kiosk
    first, second = await register(agent, 1), await register(agent, 2)
    await register(agent, 3, pid=OTHER.citizen_id)          # someone else's: never shown
    page = await open_kiosk(agent, browser)
    await insert(agent, page)
    await state(page, "visits")
    assert await page.evaluate("document.querySelectorAll('.visit').length") == 2
    await page.evaluate("document.getElementById('lang').click()")
    await page.wait_for("document.body.innerText.includes('Confirm this visit')")
    assert PATIENT.name_en.first in await shown_text(page)
    await shot(page, "06-patient-two-visits-english")
    await page.evaluate(f"document.querySelector('[data-visit=\"{first['id']}\"] .confirm')"
                        ".click()")
    await state(page, "visits")
    await page.wait_for(f"document.querySelector('[data-visit=\"{first['id']}\"] .code')"
                        ".textContent")
    await shot(page, "07-first-of-two-confirmed")
    await page.evaluate(f"document.querySelector('[data-visit=\"{second['id']}\"] .confirm')"
                        ".click()")
    await state(page, "done")
    codes = await page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.visit')].map("
        "v => [v.dataset.visit, v.querySelector('.code').textContent]))")
    recorded = await issued(server)
    assert codes == {first["id"]: recorded[first["transactionId"]],
                     second["id"]: recorded[second["transactionId"]]}
    assert len(recorded) == 2
    await shot(page, "08-two-visits-done")
    await agent.remove()
    await state(page, "idle")
    # The next patient starts in Thai.
    await page.wait_for("document.body.dataset.lang === 'th'")
    assert "กรุณาเสียบบัตรประชาชน" in await shown_text(page)


async def test_no_visit_sends_the_patient_to_staff(kiosk):
    agent, browser, server = kiosk
    await register(agent, 1, pid=OTHER.citizen_id)
    page = await open_kiosk(agent, browser)
    await insert(agent, page)
    await state(page, "staff", "none")
    assert "ไม่พบรายการรับบริการที่รอยืนยันวันนี้" in await shown_text(page)
    await check_privacy(page, PATIENT)
    await shot(page, "09-staff-no-visit")
    # The photo follows the text fields within milliseconds (long arrived by now): a screen
    # without a visit does not keep it.
    assert await page.evaluate("!document.getElementById('photo').getAttribute('src')")
    await agent.remove()
    await state(page, "idle")
    assert await issued(server) == {}


async def test_card_pulled_mid_flow_sends_nothing(kiosk):
    agent, browser, server = kiosk
    visit = await register(agent, 1)
    page = await open_kiosk(agent, browser)
    # Pulled while reading...
    agent.backend.apdu_delay = 0.5
    agent.backend.insert(DEMO_READER, demo_card(0))
    await state(page, "reading")
    agent.backend.apdu_delay = 0.0
    await agent.remove()
    await state(page, "idle")
    # ...and pulled with the visit on screen, before the tap.
    await insert(agent, page)
    await state(page, "visits")
    await agent.remove()
    await state(page, "idle")
    await shot(page, "10-card-pulled-back-to-idle")
    body = await shown_text(page)
    assert PATIENT.name_th.first not in body and visit["label"] not in body
    assert (await agent.get_json("/v1/claims"))["claims"] == []
    assert await issued(server) == {}
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"


async def test_nhso_refusing_is_said_plainly(kiosk):
    agent, browser, server = kiosk
    visit = await register(agent, 1)
    status, _ = await asyncio.to_thread(http, "POST", server.url + "/_control/reject",
                                        {"transactionIds": [visit["transactionId"]]})
    assert status == 200
    page = await open_kiosk(agent, browser)
    await insert(agent, page)
    await state(page, "visits")
    await page.evaluate("document.querySelector('.confirm').click()")
    await state(page, "staff", "refused")
    assert "สปสช. ไม่รับการยืนยันรายการนี้" in await shown_text(page)
    await shot(page, "11-staff-nhso-refused")
    assert await issued(server) == {}


async def test_visit_source_down_is_said_plainly(kiosk):
    agent, browser, server = kiosk
    await register(agent, 1)
    page = await open_kiosk(agent, browser)
    await agent.app[NHSO_SERVICE].outbox.close()        # the visits' database is gone
    await insert(agent, page)
    await state(page, "staff", "sourceDown")
    assert "ระบบของโรงพยาบาลไม่ตอบสนอง" in await shown_text(page)
    await shot(page, "12-staff-source-down")


async def test_inactivity_clears_the_screen(kiosk):
    agent, browser, server = kiosk
    await register(agent, 1)
    page = await open_kiosk(agent, browser, "?idle=5")
    await insert(agent, page)
    await state(page, "visits")
    await state(page, "removing")                       # nobody touched it: cleared
    body = await shown_text(page)
    assert PATIENT.name_th.first not in body and "ห้องตรวจ" not in body
    await shot(page, "13-inactive-remove-card")
    await agent.remove()
    await state(page, "idle")
    assert await issued(server) == {}


SOURCE_KEY = "kiosk-visit-source-key-0123"


async def test_visits_from_the_his_visit_source(aiohttp_client, tmp_path, contract_server,
                                                browser, monkeypatch):
    """A kiosk that is not the PC where visits are registered: the HIS's visit source (the
    reference implementation, a process on HTTPS) lists them; then it goes down."""
    source = VisitSourceProc(tmp_path, SOURCE_KEY, dict(os.environ))
    try:
        monkeypatch.setenv("SSL_CERT_FILE", source.cert)
        keyring = MemoryKeyring()
        keyring.set_password("thaicard-agent", "visit-source-key", SOURCE_KEY)
        agent = await start_kiosk(aiohttp_client, tmp_path, contract_server, keyring,
                                  visit_source_url=source.url + "/visits",
                                  visit_source_timeout=2.0)
        visit = {**claim_body(1, pid=PATIENT.citizen_id), "label": "คลินิกเบาหวาน, 10:15"}
        await asyncio.to_thread(source.control, "/_control/visits", [visit])
        page = await open_kiosk(agent, browser)
        await insert(agent, page)
        await state(page, "visits")
        assert "คลินิกเบาหวาน, 10:15" in await shown_text(page)
        await shot(page, "14-visit-from-the-his-source")
        await page.evaluate("document.querySelector('.confirm').click()")
        await state(page, "done")
        code = await page.evaluate(
            "document.querySelector('[data-testid=claim-code]').textContent")
        assert code == (await issued(contract_server))[visit["transactionId"]]
        await agent.remove()
        await state(page, "idle")
        # The HIS stops answering in time: the patient is sent to staff, plainly.
        await asyncio.to_thread(source.control, "/_control/mode", {"mode": "slow",
                                                                   "seconds": 30})
        await insert(agent, page)
        await state(page, "staff", "sourceDown")
        assert "ระบบของโรงพยาบาลไม่ตอบสนอง" in await shown_text(page)
        await shot(page, "15-staff-his-source-not-answering")
    finally:
        source.kill()


async def test_a_visit_already_claimed_another_way_goes_to_staff(kiosk):
    """The HIS also sent the visit's claim itself, under another transactionId: the
    outbox refuses a second claim for the same visit, and the patient is sent to staff."""
    agent, browser, server = kiosk
    visit = await register(agent, 1)
    resp = await agent.client.post("/v1/claims", json={**visit["claim"],
                                                       "transactionId": "10699-OTHER-1"})
    assert resp.status == 202, await resp.text()
    page = await open_kiosk(agent, browser)
    await insert(agent, page)
    await state(page, "visits")
    await page.evaluate("document.querySelector('.confirm').click()")
    await state(page, "staff", "review")
    assert "ต้องให้เจ้าหน้าที่ตรวจสอบ" in await shown_text(page)
    await shot(page, "17-staff-visit-already-claimed")
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"
    assert len((await agent.get_json("/v1/claims"))["claims"]) == 1
