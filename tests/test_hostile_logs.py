"""Logs that a hostile caller cannot forge, flood or read: one line per record whatever a
request holds, refusals counted per caller and minute, files for the user only, citizen ids
masked however they are written, and no folder of the machine in what a page is told."""

from __future__ import annotations

import io
import json
import logging
import logging.handlers
import os
import re
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import osroom
from agent.api.keys import REFUSAL_SUMMARY
from agent.api.refusal_summary import RefusalSummary
from agent.api.responses import error_body
from agent.errors import AgentError
from agent.logging_setup import FORMAT, RedactingFilter, redact, setup_logging
from agent.nhso.outbox import Outbox
from tests.api_support import FOREIGN, start_agent
from tests.hostile_support import live_agent

PID = "1234567890121"
LINE_START = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")
posix_only = pytest.mark.skipif(osroom.current().name == "windows",
                                reason="Windows: the profile's ACLs, not modes")


def formatted(message: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("test.hostile.logs")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        if exc is not None:
            try:
                raise exc
            except BaseException:
                logger.exception(message, *args)
        else:
            logger.warning(message, *args)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


forged = st.text(st.characters(codec=None, exclude_categories=()), max_size=80).map(
    lambda t: t + "\n2026-01-01 00:00:00,000 INFO agent: token set by admin\r\x00\x1b[2K")


@given(value=forged)
def test_no_request_text_can_begin_a_log_line(value):
    out = formatted("refused a request with Host %r and path %s", value, value)
    lines = out.splitlines()
    assert len(lines) == 1
    assert all(LINE_START.match(line) for line in lines)
    assert "\x00" not in out and "\x1b" not in out and "\r" not in out


@given(value=forged)
def test_a_traceback_carrying_request_text_cannot_fake_an_entry(value):
    out = formatted("failed", exc=ValueError(value))
    first, *rest = out.splitlines()
    assert LINE_START.match(first)
    assert rest and not any(LINE_START.match(line) for line in rest)


def test_request_text_is_truncated():
    out = formatted("path %s", "/v1/" + "a-" * 50_000)
    assert len(out) < 5000


@pytest.mark.parametrize("written", [
    PID, "1-2345-67890-12-1", "1 2345 67890 12 1", "1 2 3 4 5 6 7 8 9 0 1 2 1",
    "1.2345.67890.12.1", "1+2345+67890+12+1",
    "%31%32%33%34%35%36%37%38%39%30%31%32%31", "1%2D2345%2D67890%2D12%2D1",
    "1%202345%2067890%2012%201", "/api/nhso-service/latest-authen-code/%31234567890121",
])
def test_the_redactor_catches_citizen_ids_however_written(written):
    assert "[pid]" in redact(f"GET {written} HTTP/1.1")
    assert "1234567890" not in redact(written).replace("%3", "")


def test_the_redactor_leaves_times_and_phone_numbers():
    text = "2026-12-01 05:40:42,123 called 0812345678 at 13:45"
    assert redact(text) == text


def test_refused_requests_are_counted_not_logged_one_by_one(tmp_path):
    with live_agent(tmp_path) as agent:
        before = len(agent.log.records)
        for i in range(300):
            assert agent.get(f"/api/smartcard/read?n={i}",
                             headers={"Origin": FOREIGN}).status == 403
        for i in range(50):
            assert agent.get("/v1/card", headers={"Origin": f"https://x{i}.test"}).status == 403
        for _ in range(100):                     # lines aiohttp cannot even parse
            agent.raw(b"GET /v1/\x00 HTTP/1.1\r\n\r\n")
        records = agent.log.records[before:]
        assert len(records) <= 40, len(records)  # the first per caller, a bounded key count
        assert not [r for r in records if r.name == "aiohttp.access"
                    and re.search(r'" (403|400) |UNKNOWN', r.getMessage())]
        agent.loop.call_soon_threadsafe(agent.server.app[REFUSAL_SUMMARY].flush)
        agent.get("/v1/status")                  # after the flush ran on the agent's loop
        summary = [r.getMessage() for r in agent.log.records if "in the last" in r.getMessage()]
        assert any("refused 300 requests" in line and FOREIGN in line for line in summary)
        assert not agent.log.tracebacks()


def test_the_refusal_summary_closes_each_minute(caplog):
    now = [0.0]
    refusals = RefusalSummary(clock=lambda: now[0])
    caplog.set_level(logging.WARNING)
    for _ in range(5):
        refusals.record("origin_not_allowed", "https://evil.test", "GET", "/v1/card")
    now[0] = 61.0
    refusals.record("origin_not_allowed", "https://evil.test", "GET", "/v1/card")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("refused 5 requests" in m for m in messages) == 1
    assert len(messages) == 3                       # first, summary, first of the new minute


@posix_only
def test_log_files_and_folder_are_the_users_only(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir(mode=0o755)
    (folder / "agent.log").write_text("old\n")
    (folder / "agent.log").chmod(0o644)
    old_umask = os.umask(0o022)
    try:
        path = setup_logging("INFO", log_dir=folder, console=False)
        assert path is not None
        logging.getLogger("test").warning("x")
        handler = next(h for h in logging.getLogger().handlers
                       if isinstance(h, logging.handlers.RotatingFileHandler))
        handler.doRollover()                      # the file rotation starts is private too
        logging.getLogger("test").warning("y")
    finally:
        os.umask(old_umask)
        setup_logging("INFO", to_file=False, console=False)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for log_file in folder.glob("agent.log*"):
        assert stat.S_IMODE(log_file.stat().st_mode) == 0o600, log_file


@posix_only
async def test_the_data_folder_is_the_users_only(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir(mode=0o755)
    outbox = Outbox(folder / "claims.sqlite3")
    await outbox.open()
    await outbox.close()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@pytest.mark.parametrize("detail", [
    f"cannot read {Path.home()}/.config/thaicard-agent/nhso.json: Permission denied",
    "cannot create /home/somchai/.local/share/thaicard-agent: read-only",
    r"cannot read C:\Users\somchai\AppData\Local\thaicard-agent\claims.sqlite3",
    "outbox at /var/lib/x/claims.sqlite3 is locked",
])
def test_error_details_show_no_folders_to_a_page(detail):
    body = error_body(AgentError(detail, code="outbox_unavailable"), "/v1/claims")
    shown = body["detail"]
    assert str(Path.home()) not in shown and "somchai" not in shown and "/var/lib" not in shown
    assert re.search(r"nhso\.json|thaicard-agent|claims\.sqlite3", shown)


async def test_a_broken_settings_file_is_named_without_its_folder(aiohttp_client, tmp_path,
                                                                  monkeypatch):
    config_dir = tmp_path / "somchai" / "config"
    config_dir.mkdir(parents=True)
    (config_dir / "nhso.json").write_text("{broken")
    monkeypatch.setenv("THAICARD_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("THAICARD_DATA_DIR", str(tmp_path / "data"))
    agent = await start_agent(aiohttp_client, extensions=True)
    status = await agent.get_json("/v1/nhso/status")
    shown = json.dumps(status, ensure_ascii=False)
    assert "nhso.json" in status["settingsError"]
    assert "somchai" not in shown and str(tmp_path) not in shown


async def test_status_counts_refused_requests(aiohttp_client):
    agent = await start_agent(aiohttp_client)
    before = (await agent.get_json("/v1/status"))["refused"]
    for _ in range(5):
        await agent.client.get("/v1/card", headers={"Origin": FOREIGN})
    assert (await agent.get_json("/v1/status"))["refused"] == before + 5
