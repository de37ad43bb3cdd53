"""Hospital callers against the running agent, on a fresh install (no token, no NHSO
settings: how every site starts) and on a configured one (the NHSO contract server).

Each harness in tests/callers/ makes the requests and runs the parsing steps of one kind of
caller found in the field: a Python script indexing keys, a C#-style typed model with
``DateTime`` fields, a Node bridge reading error bodies, a kiosk page in Chromium mapping
``claimTypes``. On the old shape they crash (KeyError, null list, TypeError) or loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.assembly import NhsoParts
from agent.card.demo import demo_profile
from agent.nhso.settings import NhsoSettings, load_settings
from agent.nhso.token import TokenStore
from testrig.nhso_server import AUTHEN_LIMIT_MESSAGE, STATE, make_app
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, TOKEN, MemoryKeyring
from tests.api_support import Agent, start_agent
from tests.callers import python_script, typed_model

HERE = Path(__file__).resolve().parent / "callers"
THAI = re.compile("[\u0e00-\u0e7f]")
PID = demo_profile(0).text.citizen_id
BANGKOK = dt.timezone(dt.timedelta(hours=7))


@pytest.fixture
async def nhso(aiohttp_server):
    return await aiohttp_server(make_app({TOKEN: HCODE}))


async def fresh_agent(aiohttp_client: Any, tmp_path: Path, **config: Any) -> Agent:
    """A fresh install: NHSO functions there, but no settings and no token."""
    settings = NhsoSettings(config_dir=tmp_path / "fresh-config",
                            data_dir=tmp_path / "fresh-data")
    return await start_agent(aiohttp_client, nhso=NhsoParts(
        settings, TokenStore(MemoryKeyring())), **config)


async def configured_agent(aiohttp_client: Any, tmp_path: Path, nhso: Any,
                           config: dict[str, Any] | None = None, **overrides: Any) -> Agent:
    settings = load_settings(
        config_dir=tmp_path / "config", data_dir=tmp_path / "data", env={},
        site_path=tmp_path / "no-site.json", base_url=str(nhso.make_url("")).rstrip("/"),
        hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID, request_timeout=5.0,
        **overrides)
    keyring = MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    return await start_agent(aiohttp_client, nhso=NhsoParts(settings, TokenStore(keyring)),
                             **(config or {}))


def base(agent: Agent) -> str:
    return f"http://127.0.0.1:{agent.port}"


# -- a Python script indexing keys ------------------------------------------------------------

async def test_python_script_on_a_fresh_install(aiohttp_client, tmp_path):
    agent = await fresh_agent(aiohttp_client, tmp_path)
    out = await asyncio.to_thread(python_script.register_patient, base(agent))
    assert out["read_status"] == 200 and out["pid"] == PID
    # Every coverage key is there: null, claimTypes empty, and why.
    assert (out["main_code"], out["sub_code"], out["hosp_main"], out["paid_model"]) == (
        None, None, None, None)
    assert out["claim_types"] == [] and out["coverage_status"] == "no_token"
    assert out["valid"] == (None, None)
    # confirm-save fails in the caller's shape, in Thai for staff, English beside it.
    assert out["confirm_status"] == 500
    assert THAI.search(out["confirm_error"]) and "สปสช" in out["confirm_error"]
    thai, english = out["confirm_message"].split(" / ", 1)
    assert THAI.search(thai) and english.isascii()
    # latest-authen-code fails too, yet the keys the script indexes are there (null).
    assert out["latest_status"] == 500 and out["latest"] == (None, None, None, None)


async def test_python_script_on_a_configured_install(aiohttp_client, tmp_path, nhso):
    agent = await configured_agent(aiohttp_client, tmp_path, nhso)
    out = await asyncio.to_thread(python_script.register_patient, base(agent))
    assert out["main_code"] == "UCS" and out["main_name"] == "สิทธิหลักประกันสุขภาพแห่งชาติ"
    assert (out["sub_code"], out["hosp_main"], out["hosp_sub"]) == ("89", "10699", "03812")
    assert out["claim_types"] == ["PG0060001"] and out["coverage_status"] == "ok"
    status, code = out["confirm"]
    assert out["confirm_status"] == 200 and status == 200 and re.fullmatch(r"PP\d{10}", code)
    claim_type, latest_code, when, hcode = out["latest"]
    assert (claim_type, latest_code, hcode) == ("PG0060001", code, HCODE)
    dt.datetime.fromisoformat(when)
    # NHSO allows two authen requests per person a day: the third one's refusal reaches
    # staff in NHSO's own words.
    await asyncio.to_thread(python_script.register_patient, base(agent))
    third = await asyncio.to_thread(python_script.register_patient, base(agent))
    assert third["confirm_status"] == 500
    assert AUTHEN_LIMIT_MESSAGE in third["confirm_error"]
    assert third["confirm_message"].startswith("สปสช. ปฏิเสธคำขอ")


async def test_confirm_save_takes_what_callers_send(aiohttp_client, tmp_path, nhso):
    agent = await configured_agent(aiohttp_client, tmp_path, nhso)
    card = await agent.get_json("/api/smartcard/read")
    for n, mobile in enumerate(("081-234-5678", "+66 81 234 5678")):
        body = {"pid": PID, "claimType": "PG0060001", "mobile": mobile,
                "correlationId": f"{card['correlationId']}-{n}", "hn": "", "hcode": "",
                "visitNo": "VN1", "ward": {"code": "OPD"}, "extra": None}
        resp = await agent.client.post("/api/nhso-service/confirm-save", json=body)
        answer = await resp.json()
        assert resp.status == 200, answer
        assert answer["mobile"] == "0812345678" and "hn" not in answer
        assert answer["hcode"] == HCODE and answer["status"] == 200
    # A patient registered elsewhere: the other hcode goes to NHSO, which judges it.
    asked = nhso.app[STATE].requests["authen"]
    resp = await agent.client.post("/api/nhso-service/confirm-save", json={
        "pid": PID, "claimType": "PG0060001", "mobile": "", "hcode": "10700",
        "correlationId": "other-hospital-1"})
    answer = await resp.json()
    assert nhso.app[STATE].requests["authen"] == asked + 1
    assert resp.status == 500 and answer["code"] == "nhso_rejected"
    assert "hcode" in answer["errors"][0]["defaultMessage"]
    assert answer["errors"][0]["defaultMessage"].startswith("สปสช. ปฏิเสธคำขอ")


def _entry(code: str, days_ago: int, hcode: str = HCODE) -> dict[str, Any]:
    when = dt.datetime.now(BANGKOK) - dt.timedelta(days=days_ago)
    return {"claimCode": code, "serviceDateTime": when.replace(tzinfo=None).isoformat(
        timespec="seconds"), "service": {"code": "PG0060001", "name": ""},
        "hospital": {"hcode": hcode, "hname": ""}, "sourceChannel": "AUTHENCODE"}


async def test_latest_authen_code_looks_back_over_days(aiohttp_client, tmp_path, nhso):
    agent = await configured_agent(aiohttp_client, tmp_path, nhso, authen_lookback_days=5)
    state = nhso.app[STATE]
    state.history[PID] = [_entry("PP1000000003", 3), _entry("PP1000000001", 1, "10700")]
    latest = await agent.get_json(f"/api/nhso-service/latest-authen-code/{PID}")
    assert latest["claimCode"] == "PP1000000003" and latest["hcode"] == HCODE
    assert state.requests["status"] == 4          # today, 1, 2, 3 days ago: then it stops
    # Beyond the look-back: no code, every key there.
    state.history[PID] = [_entry("PP1000000009", 9)]
    latest = await agent.get_json(f"/api/nhso-service/latest-authen-code/{PID}")
    assert {k: latest[k] for k in ("claimType", "claimCode", "claimDateTime")} == {
        "claimType": None, "claimCode": None, "claimDateTime": None}
    assert latest["hcode"] == HCODE


async def test_save_as_draft_ends_the_retry_loop(aiohttp_client, tmp_path, nhso):
    for agent in (await fresh_agent(aiohttp_client, tmp_path),
                  await configured_agent(aiohttp_client, tmp_path, nhso)):
        body = {"pid": PID, "claimType": "PG0060001", "mobile": "", "correlationId": "d-1"}
        statuses = await asyncio.to_thread(python_script.draft_until_done, base(agent), body)
        assert statuses == [400]
        resp = await agent.client.post("/api/nhso-service/save-as-draft", json=body)
        answer = await resp.json()
        assert answer["code"] == "compat_unsupported"
        assert THAI.search(answer["errors"][0]["defaultMessage"])
    assert nhso.app[STATE].requests["authen"] == 0     # nothing went to NHSO


async def test_probe_answers_coverage_by_pid(aiohttp_client, tmp_path, nhso):
    fresh = await fresh_agent(aiohttp_client, tmp_path)
    body = await fresh.get_json(f"/api/smartcard/probe/{PID}")
    assert body["pid"] == PID and body["mainInscl"] is None and body["claimTypes"] == []
    assert body["coverageStatus"] == "no_token"
    configured = await configured_agent(aiohttp_client, tmp_path, nhso)
    body = await configured.get_json(f"/api/smartcard/probe/{PID}")
    assert body["mainInscl"].startswith("(UCS)") and body["coverageStatus"] == "ok"
    bad = await configured.get_json("/api/smartcard/probe/1234567890123", 400)
    assert bad["code"] == "bad_request" and THAI.search(bad["message"])


# -- a C#-style typed model ---------------------------------------------------------------------

async def test_typed_model_deserialises_both_installs(aiohttp_client, tmp_path, nhso):
    fresh = await fresh_agent(aiohttp_client, tmp_path)
    configured = await configured_agent(aiohttp_client, tmp_path, nhso)
    for agent in (fresh, configured):
        card = typed_model.deserialize(typed_model.SmartCardRead,
                                       await agent.get_json("/api/smartcard/read"))
        assert isinstance(card.transDate, dt.datetime) and isinstance(card.claimTypes, list)
    model = typed_model.deserialize(typed_model.SmartCardRead,
                                    await configured.get_json("/api/smartcard/read"))
    assert model.hospMain.hcode == "10699" and model.startDateTime.year == 2020
    resp = await configured.client.post("/api/nhso-service/confirm-save", json={
        "pid": PID, "claimType": "PG0060001", "mobile": "0812345678",
        "correlationId": model.correlationId})
    saved = typed_model.deserialize(typed_model.ConfirmSaved, await resp.json())
    assert saved.status == 200 and saved.claimCode.startswith("PP")
    latest = typed_model.deserialize(typed_model.AuthenCode, await configured.get_json(
        f"/api/nhso-service/latest-authen-code/{PID}"))
    assert latest.claimCode == saved.claimCode and latest.claimDateTime is not None
    none = typed_model.deserialize(typed_model.AuthenCode, await configured.get_json(
        "/api/nhso-service/latest-authen-code/" + demo_profile(1).text.citizen_id))
    assert none.claimCode is None and none.claimDateTime is None


# -- a Node bridge reading error bodies ---------------------------------------------------------

NODE = shutil.which("node")


async def run_bridge(agent: Agent, correlation_id: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        NODE or "node", str(HERE / "node_bridge.mjs"), base(agent), PID, correlation_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


@pytest.mark.skipif(NODE is None and not os.environ.get("CI"), reason="node is not installed")
async def test_node_bridge_reads_error_bodies(aiohttp_client, tmp_path, nhso):
    fresh = await run_bridge(await fresh_agent(aiohttp_client, tmp_path), "node-1")
    assert fresh["confirm"]["status"] == 500 and fresh["confirm"]["code"] is None
    assert THAI.search(fresh["confirm"]["staff"]) and THAI.search(fresh["confirm"]["message"])
    assert fresh["bad"]["status"] == 400 and THAI.search(fresh["bad"]["staff"])
    assert fresh["latest"]["status"] == 500 and fresh["latest"]["claimType"] is None
    assert fresh["draft"]["status"] == 400 and THAI.search(fresh["draft"]["staff"])
    assert fresh["probe"] == {"status": 200, "mainInscl": None, "coverageStatus": "no_token"}

    ok = await run_bridge(await configured_agent(aiohttp_client, tmp_path, nhso), "node-2")
    assert ok["confirm"]["status"] == 200 and ok["confirm"]["ok"] == 200
    assert ok["confirm"]["code"].startswith("PP") and ok["confirm"]["staff"] is None
    assert ok["latest"]["claimCode"] == ok["confirm"]["code"]
    assert ok["probe"]["mainInscl"].startswith("(UCS)")


# -- a kiosk page in Chromium -------------------------------------------------------------------

@pytest.mark.browser
async def test_kiosk_page_in_chromium(aiohttp_client, tmp_path, nhso):
    from tests.browser_support import Chromium, browser_available
    missing = browser_available()
    if missing and not os.environ.get("CI"):
        pytest.skip(missing)
    async def kiosk(_: web.Request) -> web.FileResponse:
        return web.FileResponse(HERE / "kiosk.html")

    site = web.Application()
    site.router.add_get("/", kiosk)
    runner = web.AppRunner(site, access_log=None)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = runner.addresses[0][1]
    origin = f"http://127.0.0.1:{port}"
    # The kiosk's origin is allowed, with the scopes its confirm step uses, as an admin
    # does for the hospital's own page.
    scopes = {origin: ("card", "photo", "events", "nhso", "claims")}
    fresh = await fresh_agent(aiohttp_client, tmp_path, allowed_origins=(origin,),
                              origin_scopes=scopes)
    configured = await configured_agent(aiohttp_client, tmp_path, nhso,
                                        config={"allowed_origins": (origin,),
                                                "origin_scopes": scopes})
    browser = Chromium(tmp_path / "chromium", public_port=0, hosts=[])
    (tmp_path / "chromium").mkdir()
    try:
        await browser.start({**os.environ, "HOME": str(tmp_path / "chromium")})
        context = await browser.new_context()
        page = await browser.open(origin + "/", context)
        shown = {}
        for name, agent in (("fresh", fresh), ("configured", configured)):
            shown[name] = await page.evaluate(f"window.kiosk({json.dumps(base(agent))})")
    finally:
        await browser.close()
        await runner.cleanup()
    assert shown["fresh"]["options"] == 0 and shown["fresh"]["code"] == "-"
    assert shown["fresh"]["coverageStatus"] == "no_token"
    assert shown["fresh"]["confirmStatus"] == 500 and THAI.search(shown["fresh"]["result"])
    assert shown["configured"]["options"] == 1 and shown["configured"]["code"] == "UCS"
    assert shown["configured"]["result"].startswith("รหัสยืนยัน PP"), shown


@pytest.mark.parametrize("typed", ["081-234-5678", "081 234 5678", "+66 81 234 5678",
                                   "+66812345678", "66812345678", "(081) 234-5678",
                                   "+66 (0) 81 234 5678", " 0812345678 "])
def test_mobile_numbers_as_staff_type_them(typed):
    from agent.nhso.validation import validate_confirm_save
    body = {"pid": PID, "claimType": "PG0060001", "correlationId": "c-1", "mobile": typed}
    out = validate_confirm_save(body, NhsoSettings(hcode=HCODE))
    assert out["mobile"] == "0812345678"
