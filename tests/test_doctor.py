"""``thaicard-agent doctor``: each check's good and bad case on this machine.

The PC/SC service down (the client pointed at a socket nobody serves), the rig's pcscd with
a virtual card for the good case, the port held by another process, the admin and browser
policy files missing and present, the NHSO contract server down / refusing the token /
sending a skewed ``Date``, a read-only data folder (a private read-only tmpfs), claims that
failed, a swollen log folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from agent.card.demo import demo_profile
from agent.config import Config, load_config
from agent.doctor.browsers import check_browsers
from agent.doctor.checks import (
    Context,
    check_data_dir,
    check_keyring,
    check_logs,
    check_loopback,
    check_port,
    check_readers,
)
from agent.doctor.nhso_checks import check_nhso
from agent.doctor.report import Finding, Report
from agent.doctor.run import config_finding
from agent.nhso.outbox import Outbox
from agent.nhso.settings import OUTBOX_FILE
from agent.nhso.token import TokenStore
from agent.osroom import BrowserPolicy, LinuxRoom
from agent.osroom.linux import linux_browser_policies
from testrig.nhso_server import make_app
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
from testrig.pcsc_rig import pcscd, slots
from testrig.ports import free_port
from testrig.vpcd_card import READER_NAMES, VirtualCard
from tests.api_support import clean_env, serve_cmd, wait_until_up

ROOT = Path(__file__).resolve().parents[1]


def by_check(findings: list[Finding]) -> dict[str, Finding]:
    return {f.check: f for f in findings}


def doctor_cli(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "agent", "doctor", "--json", *args], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=90)
    return proc.returncode, json.loads(proc.stdout)


def test_verdicts_order_and_exit_codes() -> None:
    def f(verdict: str) -> Finding:
        return Finding("x", verdict, "t", "t", "e", "e")

    assert Report([f("ok"), f("info")]).exit_code == 0
    assert Report([f("ok"), f("warn"), f("info")]).exit_code == 1
    assert Report([f("warn"), f("fail")]).exit_code == 2
    text = Report([f("fail")]).to_text()
    assert "[FAIL]" in text and "overall: fail" in text
    with pytest.raises(ValueError):
        f("maybe")


# -- PC/SC, readers, test read ------------------------------------------------------------
def test_pcsc_service_down_fails_with_what_to_do(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    # pcsc-lite's client finds the daemon through this socket: none answers there.
    env["PCSCLITE_CSOCK_NAME"] = str(tmp_path / "no-pcscd.comm")
    env["THAICARD_PORT"] = str(free_port())
    env["THAICARD_LOG_DIR"] = str(tmp_path / "logs")
    code, report = doctor_cli(env)
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["pcsc"]["verdict"] == "fail"
    assert "pcscd" in checks["pcsc"]["action"]["en"] and checks["pcsc"]["action"]["th"]
    assert "readers" not in checks and "card_read" not in checks
    assert code == 2 and report["exitCode"] == 2 and report["verdict"] == "fail"


@pytest.mark.pcsc
def test_pcsc_readers_and_test_read_show_only_the_masked_id(pcscd: Any, slots: Any) -> None:
    slots.insert(VirtualCard.demo(0), 0)
    deadline = time.monotonic() + 10
    while True:                      # pcscd reports the insertion a moment after vpcd has it
        found = by_check(check_readers(Context(config=Config(backend="pcsc"))))
        if "card_read" in found and found["card_read"].verdict != "info":
            break
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    assert found["pcsc"].verdict == "ok"
    assert found["readers"].verdict == "ok"
    listed = {r["name"]: r["card"] for r in found["readers"].detail["readers"]}
    assert listed[READER_NAMES[0]] is True and listed[READER_NAMES[1]] is False
    read = found["card_read"]
    assert read.verdict == "ok", read.explain_en
    cid = demo_profile(0).text.citizen_id
    assert read.detail["maskedId"] == f"{cid[0]}-{cid[1:5]}-xxxxx-xx-{cid[12]}"
    assert cid not in json.dumps([f.to_json() for f in found.values()], ensure_ascii=False)

    slots.remove_all()
    deadline = time.monotonic() + 10
    while by_check(check_readers(Context(config=Config(backend="pcsc"))))[
            "card_read"].verdict != "info":      # no card: no test read, nothing to say
        assert time.monotonic() < deadline
        time.sleep(0.1)


# -- the port -------------------------------------------------------------------------------
def test_port_free_taken_by_another_program_and_held_by_the_agent(tmp_path: Path) -> None:
    port = free_port()
    ctx = Context(config=Config(port=port))
    assert check_port(ctx).verdict == "warn"             # nothing: the agent is not running
    assert check_loopback(ctx).verdict == "info"

    squatter = subprocess.Popen(
        [sys.executable, "-c", "import socket,sys,time\n"
         "s=socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
         "print('up', flush=True); time.sleep(60)", str(port)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert squatter.stdout is not None and squatter.stdout.readline() == "up\n"
        finding = check_port(Context(config=Config(port=port)))
        assert finding.verdict == "fail"
        assert f"pid {squatter.pid}" in finding.detail["owner"]
        assert "python" in finding.detail["owner"]
    finally:
        squatter.kill()
        squatter.wait()

    agent = subprocess.Popen(serve_cmd(port), env=clean_env(tmp_path),
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_until_up(port, agent)
        ctx = Context(config=Config(port=port))
        assert check_port(ctx).verdict == "ok"
        loop = check_loopback(ctx)
        # The agent holds [::1]:PORT too wherever this machine has an IPv6 loopback.
        assert loop.verdict == "ok" and loop.detail["ipv6"] is _has_ipv6_loopback()
    finally:
        agent.terminate()
        agent.wait(15)


# -- policies ---------------------------------------------------------------------------------
def test_admin_policy_missing_then_present(tmp_path: Path) -> None:
    room = LinuxRoom(policy_file=tmp_path / "policy.json")
    config = load_config(env={}, site_path=tmp_path / "none.json",
                         config_file=None, policy=room.read_policy)
    finding = config_finding(Context(config=config, room=room), config, None)
    assert finding.verdict == "info" and finding.detail["policyKeys"] == []

    (tmp_path / "policy.json").write_text(json.dumps({"port": 8189, "allowedOrigins": [
        "https://his.example.go.th"]}))
    config = load_config(env={}, site_path=tmp_path / "none.json", policy=room.read_policy)
    finding = config_finding(Context(config=config, room=room), config, None)
    assert finding.verdict == "ok"
    assert finding.detail["policyKeys"] == ["allowedOrigins", "port"]


class FakeBrowsers(LinuxRoom):
    """The browser policy folders under a tmp ``/etc``, with Chromium installed."""

    def browser_policies(self) -> list[BrowserPolicy]:
        return linux_browser_policies(self.etc, which=lambda p: p if p == "chromium" else None)


def test_browser_policy_missing_partial_and_complete(tmp_path: Path) -> None:
    origins = ("https://authenservice.nhso.go.th", "http://his.intranet.example")
    ctx = Context(config=Config(allowed_origins=origins), room=FakeBrowsers(etc=tmp_path))
    found = by_check(check_browsers(ctx))
    assert set(found) == {"browser:chromium"}               # only what is installed
    assert found["browser:chromium"].verdict == "fail"      # a plain-http page: silent block
    managed = tmp_path / "chromium" / "policies" / "managed"
    managed.mkdir(parents=True)
    (managed / "thaicard-agent.json").write_text(json.dumps(
        {"LocalNetworkAccessAllowedForUrls": [origins[0]]}))
    finding = by_check(check_browsers(ctx))["browser:chromium"]
    assert finding.verdict == "fail" and finding.detail["missing"] == [origins[1]]
    (managed / "site.json").write_text(json.dumps(
        {"LoopbackNetworkAllowedForUrls": [origins[1]]}))
    assert by_check(check_browsers(ctx))["browser:chromium"].verdict == "ok"

    https_only = Context(config=Config(allowed_origins=("https://lab.example.go.th",)),
                         room=FakeBrowsers(etc=tmp_path))
    assert by_check(check_browsers(https_only))["browser:chromium"].verdict == "warn"


class FakeFirefox(LinuxRoom):
    def browser_policies(self) -> list[BrowserPolicy]:
        return linux_browser_policies(self.etc, which=lambda p: p if p == "firefox" else None)


def test_firefox_skip_domains_cover_pages_by_host(tmp_path: Path) -> None:
    ctx = Context(config=Config(allowed_origins=("https://his.example.go.th",)),
                  room=FakeFirefox(etc=tmp_path))
    assert by_check(check_browsers(ctx))["browser:firefox"].verdict == "warn"
    policies = tmp_path / "firefox" / "policies"
    policies.mkdir(parents=True)
    # Firefox matches the host itself or a "*." pattern, not a bare parent domain
    # (tests/test_firefox_policy.py has the whole rule).
    (policies / "policies.json").write_text(json.dumps(
        {"policies": {"LocalNetworkAccess": {"SkipDomains": ["example.go.th"]}}}))
    assert by_check(check_browsers(ctx))["browser:firefox"].verdict == "warn"
    (policies / "policies.json").write_text(json.dumps(
        {"policies": {"LocalNetworkAccess": {"SkipDomains": ["*.example.go.th"]}}}))
    assert by_check(check_browsers(ctx))["browser:firefox"].verdict == "ok"


# -- keyring ------------------------------------------------------------------------------------
def test_keyring_usable_and_missing() -> None:
    ok = check_keyring(Context(config=Config(), token_store=TokenStore(MemoryKeyring())))
    assert ok.verdict == "ok" and "MemoryKeyring" in ok.detail["backend"]
    from keyring.backends.fail import Keyring as FailKeyring

    bad = check_keyring(Context(config=Config(), token_store=TokenStore(FailKeyring())))
    assert bad.verdict == "warn" and bad.detail["code"] == "keyring_unavailable"


# -- NHSO ---------------------------------------------------------------------------------------
@pytest.fixture
def nhso_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    server = start_contract_server(dict(os.environ), tmp_path / "nhso-server.log")
    for name, value in {"THAICARD_CONFIG_DIR": tmp_path / "config",
                        "THAICARD_DATA_DIR": tmp_path / "data",
                        "THAICARD_NHSO_BASE_URL": server.url, "THAICARD_NHSO_HCODE": HCODE,
                        "THAICARD_NHSO_SOURCE_ID": SOURCE_ID,
                        "THAICARD_NHSO_RECORDER_PID": RECORDER_PID}.items():
        monkeypatch.setenv(name, str(value))
    try:
        yield server
    finally:
        server.kill()


def nhso_findings(token: str | None) -> dict[str, Finding]:
    keyring = MemoryKeyring()
    store = TokenStore(keyring)
    if token:
        store.set(token)
    return by_check(check_nhso(Context(config=Config()), store))


def test_nhso_good_then_wrong_token(nhso_server: Any) -> None:
    found = nhso_findings(TOKEN)
    assert found["nhso_settings"].verdict == "ok"
    assert found["nhso_reach"].verdict == "info"            # plain http: a test server
    assert found["clock"].verdict == "ok"
    assert found["nhso_token"].verdict == "ok", found["nhso_token"].explain_en
    assert found["claims"].verdict == "ok"

    found = nhso_findings("a-token-nhso-does-not-know-0000")
    assert found["nhso_token"].verdict == "fail"
    assert found["nhso_token"].detail["code"] == "nhso_token_invalid"
    assert TOKEN not in json.dumps([f.to_json() for f in found.values()])

    assert nhso_findings(None)["nhso_token"].verdict == "warn"


def test_visit_source_needs_its_key(nhso_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert "visit_source" not in nhso_findings(TOKEN)              # not configured: silent
    monkeypatch.setenv("THAICARD_NHSO_VISIT_SOURCE_URL", "https://his.example.test/visits")
    found = nhso_findings(TOKEN)["visit_source"]
    assert found.verdict == "warn" and "visit-source key set" in found.action_en
    keyring = MemoryKeyring()
    store = TokenStore(keyring)
    store.set(TOKEN)
    store.sibling("visit-source-key").set("the-kiosk-key-0123456789")
    found = by_check(check_nhso(Context(config=Config()), store))["visit_source"]
    assert found.verdict == "ok" and "the-kiosk-key" not in json.dumps(found.to_json())


def test_nhso_clock_skew_warns_then_fails(nhso_server: Any) -> None:
    http("POST", f"{nhso_server.url}/_control/clock", {"offset": 300})
    clock = nhso_findings(TOKEN)["clock"]
    assert clock.verdict == "warn" and -320 < clock.detail["skewSeconds"] < -280
    http("POST", f"{nhso_server.url}/_control/clock", {"offset": -7200})
    clock = nhso_findings(TOKEN)["clock"]
    assert clock.verdict == "fail" and clock.detail["skewSeconds"] > 7000


def test_nhso_down(nhso_server: Any) -> None:
    nhso_server.kill()
    found = nhso_findings(TOKEN)
    assert found["nhso_reach"].verdict == "fail"
    assert "clock" not in found
    assert found["nhso_token"].verdict == "info"


def test_claims_failed_claim_warns(nhso_server: Any, tmp_path: Path) -> None:
    async def fail_one() -> None:
        outbox = Outbox(tmp_path / "data" / OUTBOX_FILE)
        await outbox.open()
        claim, _ = await outbox.submit(claim_body(1) | {"hcode": HCODE})
        await outbox.mark_failed(claim.id, "nhso_rejected", "test")
        await outbox.submit(claim_body(2) | {"hcode": HCODE})
        await outbox.close()

    asyncio.run(fail_one())
    claims = nhso_findings(TOKEN)["claims"]
    assert claims.verdict == "warn"
    assert claims.detail["failed"] == 1 and claims.detail["queued"] == 1


# -- folders ----------------------------------------------------------------------------------
def test_data_dir_writable(tmp_path: Path) -> None:
    assert check_data_dir(Context(config=Config(), data_dir=tmp_path / "d")).verdict == "ok"


@pytest.mark.skipif(shutil.which("unshare") is None or os.geteuid() != 0,
                    reason="needs unshare and root for a private read-only tmpfs")
def test_data_dir_read_only_fails(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    script = ("from agent.config import Config\nfrom agent.doctor.checks import Context, "
              "check_data_dir\nfrom pathlib import Path\nimport json, sys\n"
              "f = check_data_dir(Context(config=Config(), data_dir=Path(sys.argv[1])))\n"
              "print(json.dumps(f.to_json()))\n")
    # A tmpfs mounted read-only in a mount namespace of its own: nobody else sees it.
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs -o ro,size=1m tmpfs "$1" && exec "{sys.executable}" -c "$2" "$1"',
         "sh", str(folder), script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    finding = json.loads(proc.stdout)
    assert finding["verdict"] == "fail"
    assert "Read-only" in finding["explanation"]["en"]


def test_log_folder_size(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "agent.log").write_text("x" * 1000)
    ctx = Context(config=Config(log_dir=logs))
    assert check_logs(ctx).verdict == "ok"
    with open(logs / "dump.bin", "wb") as fh:
        fh.truncate(60_000_000)                      # sparse: no disk space used
    assert check_logs(ctx).verdict == "warn"


def test_cli_json_exit_code_matches_the_worst_verdict(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env.update(THAICARD_PORT=str(free_port()), THAICARD_BACKEND="demo",
               THAICARD_LOG_DIR=str(tmp_path / "logs"))
    code, report = doctor_cli(env)
    assert report["exitCode"] == code
    assert code == {"ok": 0, "info": 0, "warn": 1, "fail": 2}[report["verdict"]]
    for check in report["checks"]:
        assert check["title"]["th"] and check["explanation"]["th"]
        if check["verdict"] in ("warn", "fail"):
            assert check["action"]["en"] and check["action"]["th"]
    text = subprocess.run([sys.executable, "-m", "agent", "doctor", "--no-read"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=90)
    assert "overall:" in text.stdout and text.returncode == code



@pytest.fixture
def nhso_https(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    """The contract server behind TLS with a certificate of a test CA; (base URL, CA file)."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app({TOKEN: HCODE}), access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, ssl_context=server_ssl).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    base = f"https://127.0.0.1:{port}"
    for name, value in {"THAICARD_CONFIG_DIR": tmp_path / "config",
                        "THAICARD_DATA_DIR": tmp_path / "data",
                        "THAICARD_NHSO_BASE_URL": base, "THAICARD_NHSO_HCODE": HCODE,
                        "THAICARD_NHSO_SOURCE_ID": SOURCE_ID,
                        "THAICARD_NHSO_RECORDER_PID": RECORDER_PID}.items():
        monkeypatch.setenv(name, str(value))
    try:
        yield base, str(ca_file)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_nhso_tls_untrusted_then_trusted(nhso_https: tuple[str, str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _base, ca_file = nhso_https
    # A certificate nobody installed (a TLS-inspecting proxy without its CA): refused.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    found = nhso_findings(TOKEN)
    assert found["nhso_reach"].verdict == "fail", found["nhso_reach"].explain_en
    assert "TLS" in found["nhso_reach"].explain_en
    # Once the CA is in the store the system uses (as IT installs a proxy's CA): fine.
    monkeypatch.setenv("SSL_CERT_FILE", ca_file)
    found = nhso_findings(TOKEN)
    assert found["nhso_reach"].verdict == "ok", found["nhso_reach"].explain_en
    assert found["nhso_token"].verdict == "ok" and found["clock"].verdict == "ok"


def _has_ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True
