"""The claim outbox end to end, with real processes: the agent (token from gnome-keyring's
Secret Service), the NHSO contract server injecting faults on 30% of calls, and three
``kill -9`` restarts of the agent while claims are in flight.

Every accepted claim must reach NHSO exactly once (the contract server counts per
transactionId and never deduplicates), none may be lost, duplicate submissions collapse,
and claims NHSO refuses (4xx) fail without a retry once the refusal has reached the agent.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from testrig.nhso_support import (
    TOKEN,
    Proc,
    agent_env,
    claim_body,
    free_port,
    http,
    run_cli,
    secret_service,
    start_contract_server,
    wait_for,
)

CLAIMS = 200
KILL_AFTER = (50, 110, 165)        # submissions after which the agent gets kill -9
REJECTED = {7, 77, 123, 150, 199}  # NHSO answers 400 to these
ROOT_OUT = Path(__file__).resolve().parents[1] / "test-output"


def faults(extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"seed": 5, "rules": [*(extra or []),
        # slow: some answers come in time, the others after the agent gave up waiting
        {"endpoint": "claim", "rate": 0.3, "delay": [0.2, 3.0],
         "modes": ["error", "drop", "drop_after", "slow"]},
        {"endpoint": "status", "rate": 0.3, "delay": [0.1, 0.5],
         "modes": ["error", "drop", "slow"]}]}




@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nhso-outbox")
    with secret_service(tmp / "home") as env:
        server = start_contract_server(env, tmp / "nhso-server.log")
        try:
            aenv = agent_env(env, tmp, server.url,
                             THAICARD_NHSO_RETRY_BASE="0.05", THAICARD_NHSO_RETRY_MAX="0.5",
                             THAICARD_NHSO_IN_DOUBT_DELAY="2",
                             # An unanswered send costs delay + recheck before it is resent; at
                             # the field's 30 s a claim dropped four times in a row (a few in a
                             # hundred runs) took over two minutes to settle.
                             THAICARD_NHSO_IN_DOUBT_RECHECK="3",
                             THAICARD_NHSO_REQUEST_TIMEOUT="2",
                             THAICARD_NHSO_CONNECT_TIMEOUT="1")
            r = run_cli(["token", "set"], aenv, stdin=TOKEN + "\n")
            assert r.returncode == 0, r.stderr
            yield {"tmp": tmp, "env": aenv, "server": server}
        finally:
            server.kill(signal.SIGTERM)


def start_agent(rig, port: int) -> Proc:
    return Proc(["tests.nhso_agent_proc", "--port", str(port),
                 "--events", str(rig["tmp"] / "events.jsonl")], rig["env"],
                rig["tmp"] / "agent.log")


# ~30 s on a quiet 2-core machine; the limits only end a hang.
@pytest.mark.timeout(600)
def test_exactly_once_through_faults_and_kill9(rig):
    server = rig["server"].url
    assert http("POST", f"{server}/_control/reject",
                {"transactionIds": [claim_body(n)["transactionId"] for n in REJECTED]})[0] == 200
    assert http("POST", f"{server}/_control/faults", faults())[0] == 200
    port = free_port()
    agent = start_agent(rig, port)
    now_ms = int(time.time() * 1000)
    bodies = {n: claim_body(n, now_ms=now_ms) for n in range(CLAIMS)}
    ids: dict[str, str] = {}
    rng = random.Random(3)
    hung_tx = None
    kills: list[float] = []
    started = time.monotonic()
    try:
        for n in range(CLAIMS):
            status, answer = http("POST", f"{agent.url}/v1/claims", bodies[n])
            assert status == 202, answer
            ids[bodies[n]["transactionId"]] = answer["id"]
            if n + 1 not in KILL_AFTER:
                continue
            if n + 1 == KILL_AFTER[0]:
                # Make sure one kill lands after NHSO recorded a claim but before the agent
                # heard back: the next claim's answer is held for a minute.
                extra = claim_body(CLAIMS, now_ms=now_ms)
                http("POST", f"{server}/_control/faults", faults([
                    {"endpoint": "claim", "count": 1, "delay": 60, "modes": ["slow"],
                     "key": extra["transactionId"]}]))
                bodies[CLAIMS] = extra
                status, answer = http("POST", f"{agent.url}/v1/claims", extra)
                assert status == 202
                ids[extra["transactionId"]] = answer["id"]
                hung_tx = extra["transactionId"]
                wait_for(lambda: http("GET", f"{server}/_control/state")[1]["claimCounts"]
                         .get(hung_tx), "NHSO to record the held claim")
            agent.kill(signal.SIGKILL)
            kills.append(time.time())
            agent = start_agent(rig, port)
            # The HIS may resend anything after an outage: the same claims, the same ids.
            for m in rng.sample(range(n + 1), 20):
                status, answer = http("POST", f"{agent.url}/v1/claims", bodies[m])
                assert status == 202 and answer["id"] == ids[bodies[m]["transactionId"]]
                assert answer["duplicate"] is True
        accepted_s = time.monotonic() - started

        unsettled: list[Any] = []

        def settled():
            status, body = http("GET", f"{agent.url}/v1/claims?status=queued,sending")
            unsettled[:] = [{k: c.get(k) for k in ("transactionId", "status", "attempts",
                                                    "updatedAt", "error")}
                            for c in body.get("claims", [])] if status == 200 else [status]
            return status == 200 and body["count"] == 0
        try:
            wait_for(settled, "every claim to be sent or failed", deadline=400)
        except AssertionError as e:
            raise AssertionError(f"{e}; still unsettled: {unsettled}") from None
        total_s = time.monotonic() - started
        status, listing = http("GET", f"{agent.url}/v1/claims")
        assert status == 200
        state = http("GET", f"{server}/_control/state")[1]
        (rig["tmp"] / "nhso-state.json").write_text(json.dumps(state, indent=1))
    finally:
        agent.kill(signal.SIGTERM)

    claims = {c["transactionId"]: c for c in listing["claims"]}
    rejected_tx = {bodies[n]["transactionId"] for n in REJECTED}
    expected_sent = set(ids) - rejected_tx
    # None lost: every accepted claim is in the outbox, sent or (only the refused) failed.
    assert set(claims) == set(ids) and len(ids) == CLAIMS + 1
    assert {t for t, c in claims.items() if c["status"] == "sent"} == expected_sent
    assert {t for t, c in claims.items() if c["status"] == "failed"} == rejected_tx
    # Exactly once at NHSO, and the codes we recorded are the ones NHSO issued.
    assert state["claimCounts"] == {t: 1 for t in expected_sent}
    issued = {i["transactionId"]: i["authenCode"] for i in state["issued"]}
    assert {t: claims[t]["authenCode"] for t in expected_sent} == issued
    # Refused, and sent again only when the refusal never reached the agent (its answer
    # dropped or too late, or the agent killed before it wrote it down), with NHSO's own
    # words kept for the staff.
    assert set(state["rejectedCounts"]) == rejected_tx
    for t in rejected_tx:
        calls = [(at, mode) for at, endpoint, mode, key in state["log"]
                 if endpoint == "claim" and key == t]
        processed = [(at, mode) for at, mode in calls if mode in ("ok", "drop_after", "slow")]
        assert state["rejectedCounts"][t] == len(processed), calls
        assert calls[-1][1] in ("ok", "slow"), calls        # the answer that ended it
        for (at, mode), (later, _) in itertools.pairwise(calls):
            # (the server may log a request a little after a kill that followed its sending)
            assert mode != "ok" or any(at - 2 < k < later for k in kills), (calls, kills)
    for t in rejected_tx:
        assert claims[t]["error"]["code"] == "nhso_rejected"
        assert "rejected by test rule" in claims[t]["error"]["message"]
    # The claim whose answer was lost in the crash was completed from Check Authen Status.
    assert claims[hung_tx]["recovered"] is True and claims[hung_tx]["attempts"] == 1
    assert state["faults"].get("drop_after") and state["faults"].get("slow")

    events = [json.loads(line) for line in
              (rig["tmp"] / "events.jsonl").read_text().splitlines()]
    kinds = {e["type"] for e in events}
    assert {"claim.queued", "claim.sent", "claim.failed"} <= kinds
    assert {e["transactionId"] for e in events if e["type"] == "claim.failed"} <= rejected_tx
    sent_codes = {e["transactionId"]: e["authenCode"] for e in events
                  if e["type"] == "claim.sent"}
    assert all(issued[t] == code for t, code in sent_codes.items())
    assert not any("pid" in e for e in events)
    # Neither the token nor a patient's citizen id reaches the agent's log.
    log = (rig["tmp"] / "agent.log").read_text()
    assert TOKEN not in log
    assert not [b["pid"] for b in bodies.values() if b["pid"] in log]

    ROOT_OUT.mkdir(exist_ok=True)
    (ROOT_OUT / "nhso-outbox-faults.json").write_text(json.dumps({
        "claims": CLAIMS + 1, "kills": len(KILL_AFTER), "faults": state["faults"],
        "requests": state["requests"], "submit_seconds": round(accepted_s, 2),
        "all_settled_seconds": round(total_s, 2),
        "recovered_from_status": sum(1 for c in claims.values() if c["recovered"])}, indent=2))

