"""Staff settle a claim in review on the status page, in real headless Chromium.

The whole agent (``serve --demo``) with the NHSO part, its token in a real Secret Service
keyring, and the contract server as a separate process. A claim's request never reaches
NHSO (dropped) while NHSO lists a visit of the same patient closed at another workstation
two minutes earlier: the agent cannot tell whether that record is ours, so it sends
nothing and the status page lists the claim with the record; staff click "send again"
and NHSO gets the claim once. Then NHSO refuses the token: the page shows it at once with
what to do. Screenshots go to test-output/.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from testrig.nhso_support import (
    TOKEN,
    agent_env,
    claim_body,
    http,
    run_cli,
    secret_service,
    start_contract_server,
    wait_for,
)
from tests.api_support import ROOT, free_port, wait_until_up
from tests.browser_support import Chromium, browser_available

OUTPUT = ROOT / "test-output"
MINUTE = 60_000

MISSING = browser_available()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=str(MISSING))




@pytest.fixture
async def rig(tmp_path: Path):
    with secret_service(tmp_path / "home") as env:
        server = start_contract_server(env, tmp_path / "nhso-server.log")
        port = free_port()
        aenv = agent_env(env, tmp_path, server.url, THAICARD_NHSO_IN_DOUBT_DELAY="0.2",
                         THAICARD_NHSO_IN_DOUBT_RECHECK="0.2",
                         THAICARD_NHSO_REQUEST_TIMEOUT="3", THAICARD_NHSO_RETRY_BASE="0.2",
                         THAICARD_NHSO_RETRY_MAX="0.5", THAICARD_NHSO_TOKEN_RETRY="1")
        r = run_cli(["token", "set"], aenv, stdin=TOKEN + "\n")
        assert r.returncode == 0, r.stderr
        log = open(tmp_path / "agent.log", "a")  # noqa: SIM115 - closed below
        agent = subprocess.Popen([sys.executable, "-m", "agent", "serve", "--demo", "--port",
                                  str(port)], cwd=ROOT, env=aenv, stdout=subprocess.DEVNULL,
                                 stderr=log)
        workdir = tmp_path / "browser"
        workdir.mkdir()
        browser = Chromium(workdir, public_port=free_port(), hosts=["unused.test"])
        try:
            wait_until_up(port, agent)
            await browser.start(browser.trust(trustme.CA()))
            yield {"browser": browser, "agent": f"http://127.0.0.1:{port}",
                   "nhso": server.url}
        finally:
            await browser.close()
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait(5)
            log.close()
            server.kill(signal.SIGTERM)


def claim_state(rig, claim_id: str) -> dict:
    # The agent answers local programs (no Origin) on every route.
    status, view = http("GET", f"{rig['agent']}/v1/claims/{claim_id}")
    assert status == 200, view
    return view


async def test_staff_send_a_claim_in_review_again_from_the_status_page(rig):
    nhso, agent = rig["nhso"], rig["agent"]
    now = int(time.time() * 1000)
    ours = claim_body(950, serviceDateTime=now - MINUTE, invoiceDateTime=now - MINUTE)
    status, other = http("POST", f"{nhso}/_control/workstation", {
        "pid": ours["pid"], "serviceDateTime": ours["serviceDateTime"] - 2 * MINUTE})
    assert status == 200
    http("POST", f"{nhso}/_control/faults", {"rules": [
        {"endpoint": "claim", "modes": ["drop"], "count": 1, "key": ours["transactionId"]}]})
    status, queued = http("POST", f"{agent}/v1/claims", ours)
    assert status == 202, queued
    wait_for(lambda: claim_state(rig, queued["id"])["status"] == "needs_review", "review")

    browser = rig["browser"]
    context = await browser.new_context()
    page = await browser.open(f"{agent}/", context)
    await page.wait_for("!!document.querySelector('.review .review-resend')")
    shown = await page.evaluate("document.getElementById('nhso-section').innerText")
    assert other["authenCode"] in shown and ours["transactionId"] in shown
    assert ours["pid"] not in shown                       # masked, never in full
    await page.screenshot(OUTPUT / "status-page-claim-review.png")
    await page.evaluate("document.querySelector('.review .review-resend').click()")
    view = wait_for(lambda: (v := claim_state(rig, queued["id"]))["status"] == "sent" and v,
                    "the claim sent")
    assert view["resolution"]["action"] == "resend" and view["authenCode"] != other["authenCode"]
    _, state = http("GET", f"{nhso}/_control/state")
    assert state["claimCounts"] == {ours["transactionId"]: 1}
    await page.wait_for("document.querySelectorAll('.review').length === 0")

    # NHSO refuses the token: the page says so at once, with what to do.
    http("POST", f"{nhso}/_control/tokens", {TOKEN: None})
    later = claim_body(951, serviceDateTime=now - MINUTE, invoiceDateTime=now - MINUTE)
    status, _ = http("POST", f"{agent}/v1/claims", later)
    assert status == 202
    await page.wait_for("!document.getElementById('token-refused').hidden")
    banner = await page.evaluate("document.getElementById('token-refused').textContent")
    assert "Invalid token." in banner and "token set" in banner
    await page.screenshot(OUTPUT / "status-page-token-refused.png")
