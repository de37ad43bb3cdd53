"""``/metrics``: every series the admin docs list, in the Prometheus text format, readable
without an Origin; NHSO calls and claims counted against the contract server; and the OS
event log handler redacting like the log file."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from agent.assembly import NhsoParts
from agent.logging_setup import RedactingFilter
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from agent.oslog import os_event_log_handler
from agent.osroom import LinuxRoom
from testrig.nhso_server import make_app
from testrig.nhso_support import HCODE, RECORDER_PID, SOURCE_ID, TOKEN, MemoryKeyring, claim_body
from tests.api_support import DEMO_READER, start_agent

SERIES = ("thaicard_card_reads", "thaicard_card_read_duration_seconds", "thaicard_readers",
          "thaicard_reader_card_present", "thaicard_pcsc_up", "thaicard_claims",
          "thaicard_claims_oldest_unsent_age_seconds", "thaicard_claims_due",
          "thaicard_nhso_requests", "thaicard_nhso_request_duration_seconds",
          "thaicard_refused_requests", "thaicard_agent", "thaicard_agent_uptime_seconds")


async def scrape(agent: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = await agent.client.get("/metrics")          # no Origin, like a monitoring agent
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


async def test_reads_readers_refusals_version(aiohttp_client: Any) -> None:
    agent = await start_agent(aiohttp_client, insert=False)
    await agent.insert(0)
    await agent.remove()
    await agent.insert(1)
    refused = await agent.client.get("/v1/status", headers={"Origin": "https://evil.example"})
    assert refused.status == 403
    samples = await scrape(agent)
    assert value(samples, "thaicard_card_reads_total", reader=DEMO_READER, outcome="ok") == 2
    assert value(samples, "thaicard_card_read_duration_seconds_count", reader=DEMO_READER) == 2
    assert value(samples, "thaicard_readers") == 1
    assert value(samples, "thaicard_reader_card_present", reader=DEMO_READER) == 1
    assert value(samples, "thaicard_pcsc_up") == 1
    assert value(samples, "thaicard_refused_requests_total", kind="origin",
                 reason="origin_not_allowed") == 1
    assert value(samples, "thaicard_agent_info", version=__import__("agent").__version__) == 1
    assert value(samples, "thaicard_agent_uptime_seconds") >= 0
    # A browser page on an allowed origin may read it too; a foreign one may not.
    resp = await agent.client.get("/metrics", headers={"Origin": "https://evil.example"})
    assert resp.status == 403


async def test_claims_and_nhso_calls(aiohttp_client: Any, aiohttp_server: Any,
                                     tmp_path: Path) -> None:
    nhso = await aiohttp_server(make_app({TOKEN: HCODE}))
    settings = load_settings(config_dir=tmp_path / "config", data_dir=tmp_path / "data",
                             env={}, site_path=tmp_path / "none.json",
                             base_url=str(nhso.make_url("")).rstrip("/"), hcode=HCODE,
                             source_id=SOURCE_ID, recorder_pid=RECORDER_PID, retry_base=0.01)
    keyring = MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    agent = await start_agent(aiohttp_client, nhso=NhsoParts(settings, TokenStore(keyring)))
    resp = await agent.client.post("/v1/claims", json=claim_body(1))
    assert resp.status == 202, await resp.text()
    deadline = time.monotonic() + 20
    while True:
        samples = await scrape(agent)
        if samples.get(("thaicard_claims", (("state", "sent"),))) == 1:
            break
        assert time.monotonic() < deadline, "the claim was not sent"
        await asyncio.sleep(0.05)
    assert value(samples, "thaicard_nhso_requests_total", call="close claim", outcome="ok") == 1
    assert value(samples, "thaicard_nhso_request_duration_seconds_count",
                 call="close claim") == 1
    assert value(samples, "thaicard_claims", state="queued") == 0
    assert value(samples, "thaicard_claims_oldest_unsent_age_seconds") == 0
    assert value(samples, "thaicard_claims_due") == 0
    names = {name for name, _ in samples}
    for series in SERIES:
        assert any(n == series or n.startswith(series + "_") for n in names), series


def test_os_event_log_gets_warnings_redacted(tmp_path: Path) -> None:
    path = tmp_path / "log.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        handler = os_event_log_handler(RedactingFilter(), LinuxRoom(syslog=path))
        assert handler is not None
        logger = logging.getLogger("test.oslog")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.info("an info line stays out of the OS log")
            logger.warning("read failed for 1234567890121 with Bearer abc.def")
            message = server.recv(4096).decode()
        finally:
            logger.removeHandler(handler)
            handler.close()
    assert "thaicard-agent" in message and "WARNING" in message
    assert "1234567890121" not in message and "[pid]" in message
    assert "abc.def" not in message
    assert os_event_log_handler(RedactingFilter(), LinuxRoom(syslog=tmp_path / "none")) is None


async def test_status_page_links_to_the_doctor_report(aiohttp_client: Any) -> None:
    agent = await start_agent(aiohttp_client)
    page = await (await agent.client.get("/")).text()
    assert 'href="/doctor"' in page
    resp = await agent.client.get("/doctor")
    assert resp.status == 200 and resp.content_type == "text/plain"
    report = await resp.text()
    assert "overall:" in report and "ตรวจสอบ" not in report.split("overall:")[1]
    doc = await agent.get_json("/v1/doctor")
    assert {c["check"] for c in doc["checks"]} >= {"config", "pcsc", "readers", "port"}
    assert "card_read" not in {c["check"] for c in doc["checks"]}    # no test read in-agent
