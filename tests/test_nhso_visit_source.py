"""The visit source: the HIS's HTTPS endpoint a kiosk asks for a patient's visits, here the
reference implementation testrig/visit_source.py as a process with its own certificate
(trusted the way IT would install it: in the system store the agent reads)."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from agent.assembly import NhsoParts
from agent.card.demo import demo_profile
from agent.nhso import cli as nhso_cli
from agent.nhso.settings import SettingsError, load_settings
from agent.nhso.token import TokenStore
from testrig.nhso_server import STATE, make_app
from testrig.nhso_support import (
    HCODE,
    RECORDER_PID,
    SOURCE_ID,
    TOKEN,
    MemoryKeyring,
    VisitSourceProc,
    claim_body,
)
from tests.api_support import Agent, start_agent

PATIENT = demo_profile(0).text.citizen_id
OTHER = demo_profile(1).text.citizen_id
KEY = "visit-source-key-0123456789"
DAY_MS = 86_400_000


@pytest.fixture
def source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    proc = VisitSourceProc(tmp_path, KEY, dict(os.environ))
    monkeypatch.setenv("SSL_CERT_FILE", proc.cert)   # as IT installs the HIS's CA
    try:
        yield proc
    finally:
        proc.kill()


def control(source: VisitSourceProc, path: str, body: Any = None) -> Any:
    return source.control(path, body)


@pytest.fixture
async def nhso(aiohttp_server: Any) -> Any:
    return await aiohttp_server(make_app({TOKEN: HCODE}))


async def make_agent(aiohttp_client: Any, tmp_path: Path, nhso: Any, source: Any, *,
                     key: str | None = KEY, timeout: float = 5.0) -> Agent:
    settings = load_settings(
        config_dir=tmp_path / "config", data_dir=tmp_path / "data", env={},
        site_path=tmp_path / "no-site.json", base_url=str(nhso.make_url("")).rstrip("/"),
        hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID,
        visit_source_url=source.url + "/visits", visit_source_timeout=timeout)
    keyring = MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    if key:
        keyring.set_password("thaicard-agent", "visit-source-key", key)
    agent = await start_agent(aiohttp_client, nhso=NhsoParts(settings, TokenStore(keyring)))
    await agent.ready()
    return agent


async def visits_of(agent: Agent, pid: str = PATIENT, status: int = 200) -> Any:
    return await agent.get_json(f"/v1/visits?pid={pid}&date=today", status=status)


async def test_the_source_lists_the_patients_visits_of_the_day(aiohttp_client, tmp_path,
                                                               nhso, source):
    mine = {**claim_body(1, pid=PATIENT), "label": "ห้องตรวจ 3, 09:40"}
    yesterday = {**claim_body(2, pid=PATIENT), "label": "เมื่อวาน"}
    yesterday["serviceDateTime"] -= DAY_MS
    yesterday["invoiceDateTime"] -= DAY_MS
    broken = {**claim_body(4, pid=PATIENT), "totalAmount": "350"}
    control(source, "/_control/visits", [mine, yesterday, claim_body(3, pid=OTHER), broken])
    agent = await make_agent(aiohttp_client, tmp_path, nhso, source)
    listed = await visits_of(agent)
    assert [v["transactionId"] for v in listed["visits"]] == [mine["transactionId"]]
    assert listed["visits"][0]["label"] == "ห้องตรวจ 3, 09:40"
    again = await visits_of(agent)                       # asked again: the same visit
    assert [v["id"] for v in again["visits"]] == [listed["visits"][0]["id"]]
    assert control(source, "/_control/state")["requests"] == 2
    # Confirmed through the one path: the card, the outbox, NHSO.
    resp = await agent.client.post(f"/v1/visits/{listed['visits'][0]['id']}/confirm?wait=20",
                                   json={})
    out = await resp.json()
    assert resp.status == 200, out
    assert out["status"] == "sent"
    assert out["claimCode"] == nhso.app[STATE].issued[0]["authenCode"]
    # Without a citizen id, the source is not asked (it answers per patient).
    assert (await agent.get_json("/v1/visits?date=today"))["count"] == 1
    assert control(source, "/_control/state")["requests"] == 2


@pytest.mark.parametrize(("case", "detail"), [
    ("wrong key", "HTTP 401"), ("no key", "no key is set"), ("error", "HTTP 500"),
    ("slow", "no answer within 1 s"), ("down", "cannot reach the HIS"),
    ("untrusted", "cannot reach the HIS: ClientConnectorCertificateError"),
])
async def test_failures_are_said_plainly(aiohttp_client, tmp_path, nhso, source, monkeypatch,
                                         case, detail):
    key = {"wrong key": "not-the-key-0123456789", "no key": None}.get(case, KEY)
    agent = await make_agent(aiohttp_client, tmp_path, nhso, source, key=key, timeout=1.0)
    if case in ("error", "slow"):
        control(source, "/_control/mode", {"mode": case, "seconds": 30})
    if case == "down":
        source.kill()
    if case == "untrusted":
        monkeypatch.delenv("SSL_CERT_FILE")
    out = await visits_of(agent, status=503)
    assert out["code"] == "visit_source_unavailable"
    assert detail in out["detail"] and out["message_th"]
    assert KEY not in json.dumps(out)


def test_the_source_must_be_https(tmp_path):
    with pytest.raises(SettingsError, match="visitSourceUrl"):
        load_settings(config_dir=tmp_path, data_dir=tmp_path, env={},
                      site_path=tmp_path / "none.json",
                      visit_source_url="http://his.example.test/visits")
    with pytest.raises(SettingsError, match="visitSourceTimeout"):
        load_settings(config_dir=tmp_path, data_dir=tmp_path, env={},
                      site_path=tmp_path / "none.json", visit_source_timeout=0.0)


def test_the_key_is_kept_in_the_keyring(monkeypatch, capsys):
    keyring = MemoryKeyring()
    store = TokenStore(keyring)
    monkeypatch.setattr("sys.stdin", io.StringIO(KEY + "\n"))
    assert nhso_cli.cmd_visit_key_set(argparse.Namespace(), store) == 0
    assert keyring.get_password("thaicard-agent", "visit-source-key") == KEY
    assert store.get() is None                        # not the NHSO token
    assert nhso_cli.cmd_visit_key_status(argparse.Namespace(), store) == 0
    printed = capsys.readouterr().out
    assert KEY not in printed and KEY[-4:] in printed
    assert nhso_cli.cmd_visit_key_clear(argparse.Namespace(), store) == 0
    assert nhso_cli.cmd_visit_key_status(argparse.Namespace(), store) != 0


async def test_the_reference_source_refuses_without_the_key(source):
    status, _ = await asyncio.to_thread(http_tls, source, "/visits?pid=" + PATIENT +
                                        "&date=2026-12-01")
    assert status == 401


def http_tls(source: Any, path: str) -> tuple[int, Any]:
    context = ssl.create_default_context(cafile=source.cert)
    try:
        with urllib.request.urlopen(source.url + path, context=context, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, None

