"""``client.js confirmVisit`` in a HIS-like page, in real headless Chromium.

The page is on an allowed HTTPS origin that Chromium treats as the public internet (Local
Network Access granted as a user or the admin policy would); it imports the client from
the agent, registers nothing itself (the HIS did, here the test), and calls
``confirmVisit(visit)``: the dialog waits for the card, refuses another person's card,
and confirms with the patient's own; the EP code shown and answered is the one the NHSO
contract server (a process) issued. Screenshots under test-output/confirm-visit/.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import trustme

from agent.assembly import NhsoParts
from agent.card.demo import demo_profile
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from agent.readers.demo import DEMO_READER, demo_card
from testrig.nhso_support import (
    HCODE,
    RECORDER_PID,
    SOURCE_ID,
    TOKEN,
    MemoryKeyring,
    claim_body,
    http,
    start_contract_server,
)
from tests.api_support import ROOT, start_agent
from tests.browser_support import PUBLIC_IP, Chromium, Page, browser_available, start_public_site

pytestmark = pytest.mark.browser

OUTPUT = ROOT / "test-output" / "confirm-visit"
HIS_HOST = "his.example.test"
PATIENT = demo_profile(0).text

missing = browser_available()
if missing and os.environ.get("CI"):
    raise RuntimeError(f"browser tests cannot run in CI: {missing}")
if missing:
    pytest.skip(missing, allow_module_level=True)


def free_public_port() -> int:
    with socket.socket() as s:
        s.bind((PUBLIC_IP, 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def his(aiohttp_client: Any, tmp_path: Path) -> Any:
    server = start_contract_server(dict(os.environ), tmp_path / "nhso-server.log")
    public_port = free_public_port()
    origin = f"https://{HIS_HOST}:{public_port}"
    settings = load_settings(
        config_dir=tmp_path / "config", data_dir=tmp_path / "data", env={},
        site_path=tmp_path / "no-site.json", base_url=server.url, hcode=HCODE,
        source_id=SOURCE_ID, recorder_pid=RECORDER_PID, request_timeout=5.0,
        retry_base=0.05, retry_max=0.5)
    keyring = MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    agent = await start_agent(aiohttp_client, insert=False, allowed_origins=(origin,),
                              origin_scopes={origin: ("card", "events", "claims")},
                              nhso=NhsoParts(settings, TokenStore(keyring)))
    ca = trustme.CA()
    site = await start_public_site(ca, [HIS_HOST], public_port)
    workdir = tmp_path / "browser"
    workdir.mkdir()
    browser = Chromium(workdir, public_port=public_port, hosts=[HIS_HOST])
    try:
        await browser.start(browser.trust(ca))
        context = await browser.new_context()
        await browser.allow_loopback(origin, context)
        page = await browser.open(origin + "/", context)
        yield agent, page, server
    finally:
        await browser.close()
        await site.cleanup()
        server.kill()


START = """
(async () => {
  const { ThaiCardAgent } = await import("http://127.0.0.1:%(port)d/v1/client.js");
  window.agent = new ThaiCardAgent({ base: "http://127.0.0.1:%(port)d", photo: false });
  window.outcome = null;
  window.agent.confirmVisit(%(visit)s).then(
    (answer) => { window.outcome = { answer }; },
    (err) => { window.outcome = { error: err.code }; });
  return true;
})()
"""


async def dialog_state(page: Page, state: str) -> None:
    try:
        await _dialog_state(page, state)
    except AssertionError:
        raise AssertionError(state + " not reached: " + json.dumps(await page.evaluate(
            "({state: document.querySelector('dialog')?.dataset.state, ws: window.agent?.state,"
            " readers: JSON.stringify(window.agent?.readers).slice(0, 300),"
            " text: document.body.innerText})"), ensure_ascii=False)
            + " console: " + "; ".join(page.browser.console[-5:])) from None


async def _dialog_state(page: Page, state: str) -> None:
    await page.wait_for("document.querySelector('dialog.thaicard-confirm')?.dataset.state === "
                        + json.dumps(state), timeout=45)


async def test_confirm_visit_in_a_his_page(his):
    agent, page, server = his
    resp = await agent.client.post("/v1/visits", json={**claim_body(1, pid=PATIENT.citizen_id),
                                                       "label": "ห้องตรวจ 3, 09:40"})
    visit = await resp.json()
    assert resp.status == 201, visit
    await page.evaluate(START % {"port": agent.port, "visit": json.dumps(visit["id"])})
    await dialog_state(page, "waiting")
    assert "ห้องตรวจ 3, 09:40" in await page.evaluate("document.body.innerText")
    await page.screenshot(OUTPUT / "01-waiting-for-the-card.png")
    # Somebody else's card: refused in the dialog, nothing confirmed.
    await agent.insert(1)
    await dialog_state(page, "mismatch")
    assert await page.evaluate("document.querySelector('.thaicard-confirm-ok').hidden")
    await page.screenshot(OUTPUT / "02-another-persons-card.png")
    await agent.remove()
    await dialog_state(page, "waiting")
    agent.backend.insert(DEMO_READER, demo_card(0))
    await dialog_state(page, "ready")
    await page.screenshot(OUTPUT / "03-the-patients-card.png")
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"
    await page.evaluate("document.querySelector('.thaicard-confirm-ok').click()")
    await dialog_state(page, "confirmed")
    shown = await page.evaluate("document.querySelector('.thaicard-confirm-code').textContent")
    status, state = await asyncio.to_thread(http, "GET", server.url + "/_control/state")
    assert [i["authenCode"] for i in state["issued"]] == [shown]
    await page.screenshot(OUTPUT / "04-confirmed-with-the-code.png")
    await page.evaluate("document.querySelector('.thaicard-confirm-close').click()")
    await page.wait_for("window.outcome")
    outcome = await page.evaluate("window.outcome")
    assert outcome["answer"]["claimCode"] == shown and outcome["answer"]["status"] == "sent"
    assert await page.evaluate("document.querySelector('dialog') === null")
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "confirmed"


async def test_closing_the_dialog_confirms_nothing(his):
    agent, page, server = his
    resp = await agent.client.post("/v1/visits", json=claim_body(1, pid=PATIENT.citizen_id))
    visit = await resp.json()
    await page.evaluate(START % {"port": agent.port, "visit": json.dumps(visit["id"])})
    await agent.insert(0)
    await dialog_state(page, "ready")
    await page.evaluate("document.querySelector('.thaicard-confirm-close').click()")
    await page.wait_for("window.outcome")
    assert await page.evaluate("window.outcome") == {"error": "cancelled"}
    assert (await agent.get_json("/v1/claims"))["claims"] == []
    assert (await agent.get_json(f"/v1/visits/{visit['id']}"))["status"] == "waiting"
