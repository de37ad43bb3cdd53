"""Claims whose answer was lost, settled against the contract server the way the field
breaks them (docs/nhso.md, "Claims in doubt"): two visits of one patient a day, a claim
closed at another workstation, NHSO recording late, records staff must choose between,
the same visit under a new transactionId, a refused token, and NHSO's answer quirks (a
UTF-8 BOM, an empty body, the second Check Authen Status format, a proxy's HTML page).

Every case ends with each claim at NHSO exactly once (counted by the contract server per
transactionId) and each showing its own code.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from agent.nhso import token as token_mod
from testrig.nhso_server import Rule
from testrig.nhso_support import TOKEN, claim_body
from tests.nhso_inprocess import (
    claim_status,
    events_of,
    make_agent,
    nhso,
    server_state,
    submit,
    until,
    wait_status,
)

MINUTE = 60_000
PID_N = 700                      # the patient of these tests (one per test via n)


def visit(n: int, minutes_ago: int, tid: str, **changes: Any) -> dict[str, Any]:
    """A visit of patient ``n`` (one patient, several visits a day)."""
    at = int(time.time() * 1000) - minutes_ago * MINUTE
    return claim_body(n, serviceDateTime=at, invoiceDateTime=at, transactionId=tid,
                      visitNumber=tid.rsplit("-", 1)[-1], **changes)


def assert_each_once_with_its_own_code(state: Any, views: list[dict[str, Any]]) -> None:
    issued = {i["transactionId"]: i["authenCode"] for i in state.issued}
    assert dict(state.claim_counts) == {v["transactionId"]: 1 for v in views}
    for view in views:
        assert view["status"] == "sent"
        assert view["authenCode"] == issued[view["transactionId"]]
    foreign = {f["authenCode"] for f in state.foreign}
    assert not foreign & {v["authenCode"] for v in views}


@pytest.mark.parametrize("dropped_first", [True, False], ids=["first-dropped", "first-lost"])
async def test_two_visits_one_dropped_one_answer_lost(make_agent, nhso, dropped_first):
    """Visit 1 (10 min ago) and visit 2 (3 min ago) of one patient. One request never
    reaches NHSO (dropped), the other's answer is lost after NHSO recorded it: the lost one
    takes its own code from Check Authen Status, the dropped one is sent again, and neither
    takes the other's code (the old rule took any unused code of the day)."""
    client = await make_agent(request_timeout=2.0)
    state = server_state(nhso)
    first, second = visit(PID_N, 10, "10699-VN000001"), visit(PID_N, 3, "10699-VN000002")
    drop, lose = (first, second) if dropped_first else (second, first)
    state.rules = [Rule("claim", ["drop"], count=1, key=drop["transactionId"]),
                   Rule("claim", ["drop_after"], count=1, key=lose["transactionId"])]
    ids = [(await submit(client, body))["id"] for body in (first, second)]
    views = [await wait_status(client, i, "sent") for i in ids]
    assert_each_once_with_its_own_code(state, views)
    by_tid = {v["transactionId"]: v for v in views}
    assert by_tid[lose["transactionId"]]["recovered"] is True
    assert by_tid[drop["transactionId"]]["recovered"] is False
    assert by_tid[drop["transactionId"]]["attempts"] == 2


async def test_another_workstations_claim_is_never_taken(make_agent, nhso):
    """The patient's visit was closed at another workstation 40 minutes ago; our claim's
    request is dropped: NHSO lists only the other one, which is not ours: ours is sent."""
    client = await make_agent()
    state = server_state(nhso)
    ours = visit(PID_N + 1, 2, "10699-VN000011")
    other = await nhso_control(nhso, "/_control/workstation", {
        "pid": ours["pid"], "serviceDateTime": ours["serviceDateTime"] - 40 * MINUTE})
    state.rules = [Rule("claim", ["drop"], count=1, key=ours["transactionId"])]
    view = await wait_status(client, (await submit(client, ours))["id"], "sent")
    assert_each_once_with_its_own_code(state, [view])
    assert view["authenCode"] != other["authenCode"] and view["attempts"] == 2


async def test_answer_lost_beside_another_workstations_claim(make_agent, nhso):
    client = await make_agent()
    state = server_state(nhso)
    ours = visit(PID_N + 2, 2, "10699-VN000021")
    await nhso_control(nhso, "/_control/workstation", {
        "pid": ours["pid"], "serviceDateTime": ours["serviceDateTime"] - 40 * MINUTE})
    state.rules = [Rule("claim", ["drop_after"], count=1, key=ours["transactionId"])]
    view = await wait_status(client, (await submit(client, ours))["id"], "sent")
    assert view["recovered"] is True and view["attempts"] == 1
    assert_each_once_with_its_own_code(state, [view])


async def test_a_record_that_cannot_be_told_apart_waits_for_staff(make_agent, nhso):
    """Another workstation closed a visit of this patient 2 minutes before ours (same
    hospital and service); our request is dropped. NHSO's record could be ours with a
    wrong clock, or theirs: nothing is sent, staff see both, choose, and the choice is
    recorded."""
    client = await make_agent()
    state = server_state(nhso)
    ours = visit(PID_N + 3, 1, "10699-VN000031")
    other = await nhso_control(nhso, "/_control/workstation", {
        "pid": ours["pid"], "serviceDateTime": ours["serviceDateTime"] - 2 * MINUTE})
    state.rules = [Rule("claim", ["drop"], count=1, key=ours["transactionId"])]
    claim_id = (await submit(client, ours))["id"]
    view = await wait_status(client, claim_id, "needs_review")
    assert [c["claimCode"] for c in view["review"]["candidates"]] == [other["authenCode"]]
    assert "not to the second" in view["review"]["reason"]
    assert "วินาที" in view["review"]["reason_th"]
    [event] = await events_of(client, "claim.needs_review", 1)
    assert event["id"] == claim_id and event["candidates"] == view["review"]["candidates"]
    listed = await client.get("/v1/claims", params={"status": "needs_review"})
    assert [c["id"] for c in (await listed.json())["claims"]] == [claim_id]
    # Nothing is sent while it waits, however long.
    await until(lambda: state.requests["status"] >= 1, "the status check")
    assert dict(state.claim_counts) == {}
    # A code that was not listed is refused; staff choose "send again".
    resp = await client.post(f"/v1/claims/{claim_id}/review",
                             json={"action": "take", "claimCode": "EP0000000000"})
    assert resp.status == 400
    resp = await client.post(f"/v1/claims/{claim_id}/review", json={"action": "resend"},
                             headers={"Origin": "https://his.example"})
    assert resp.status == 200, await resp.text()
    view = await wait_status(client, claim_id, "sent")
    assert_each_once_with_its_own_code(state, [view])
    assert view["resolution"]["action"] == "resend"
    assert view["resolution"]["by"] == "https://his.example" and view["resolution"]["at"]
    # Reviewed once: a second choice is refused.
    resp = await client.post(f"/v1/claims/{claim_id}/review", json={"action": "resend"})
    assert resp.status == 409 and (await resp.json())["code"] == "claim_not_in_review"


async def test_staff_take_the_listed_code(make_agent, nhso):
    """Our answer is lost and NHSO lists two records at our second (ours and a double
    recorded elsewhere): staff take one; it is recorded as sent with that code and never
    sent."""
    client = await make_agent()
    state = server_state(nhso)
    ours = visit(PID_N + 4, 1, "10699-VN000041")
    state.rules = [Rule("claim", ["drop_after"], count=1, key=ours["transactionId"])]
    await nhso_control(nhso, "/_control/workstation", {
        "pid": ours["pid"], "serviceDateTime": ours["serviceDateTime"]})
    claim_id = (await submit(client, ours))["id"]
    view = await wait_status(client, claim_id, "needs_review")
    codes = [c["claimCode"] for c in view["review"]["candidates"]]
    mine = state.issued[0]["authenCode"]
    assert sorted(codes) == sorted([mine, state.foreign[0]["authenCode"]])
    resp = await client.post(f"/v1/claims/{claim_id}/review",
                             json={"action": "take", "claimCode": mine})
    assert resp.status == 200
    view = await claim_status(client, claim_id)
    assert (view["status"], view["authenCode"], view["recovered"]) == ("sent", mine, True)
    assert view["resolution"]["claimCode"] == mine
    assert dict(state.claim_counts) == {ours["transactionId"]: 1}


async def test_late_recording_is_found_by_the_second_check(make_agent, nhso):
    """NHSO records the claim 2.5 s after the request arrived; the agent gave up waiting
    at 0.5 s and asks at about 0.7 s (nothing yet), then once more 3 s later: found, not
    sent again."""
    client = await make_agent(request_timeout=0.5, in_doubt_delay=0.2, in_doubt_recheck=3.0)
    state = server_state(nhso)
    body = visit(PID_N + 5, 1, "10699-VN000051")
    state.rules = [Rule("claim", ["late"], count=1, delay=2.5, key=body["transactionId"])]
    view = await wait_status(client, (await submit(client, body))["id"], "sent")
    assert view["recovered"] is True and view["attempts"] == 1
    assert state.requests["status"] == 2
    assert_each_once_with_its_own_code(state, [view])


async def test_the_same_visit_under_a_new_transaction_id_is_refused(make_agent, nhso):
    client = await make_agent()
    first = visit(PID_N + 6, 5, "10699-VN000061")
    existing = await submit(client, first)
    again = {**first, "transactionId": "10699-VN000062"}
    resp = await client.post("/v1/claims", json=again)
    body = await resp.json()
    assert resp.status == 409 and body["code"] == "claim_same_visit"
    assert body["existing"]["id"] == existing["id"]
    assert body["existing"]["transactionId"] == first["transactionId"]
    assert body["message_th"] and "newVisit" in body["message_en"]
    # Another hospital's claim or another service is another visit.
    resp = await client.post("/v1/claims", json={**again, "transactionId": "10699-VN000063",
                                                  "claimServiceCode": "PG0130001"})
    assert resp.status == 202
    # The caller says it is another visit at the same time.
    resp = await client.post("/v1/claims?newVisit=true", json=again)
    assert resp.status == 202
    resp = await client.post("/v1/claims?newVisit=maybe", json=again)
    assert resp.status == 400
    views = [await wait_status(client, c["id"], "sent") for c in
             [existing, *[(await submit(client, again))]]]
    assert len({v["authenCode"] for v in views}) == 2


async def test_a_refused_claim_does_not_block_its_corrected_visit(make_agent, nhso):
    client = await make_agent()
    first = visit(PID_N + 7, 5, "10699-VN000071")
    await nhso_control(nhso, "/_control/reject", {"transactionIds": [first["transactionId"]]})
    failed = await wait_status(client, (await submit(client, first))["id"], "failed")
    again = {**first, "transactionId": "10699-VN000072"}
    view = await wait_status(client, (await submit(client, again))["id"], "sent")
    assert failed["id"] != view["id"]


async def test_a_refused_token_is_agent_state_and_retried_soon(make_agent, nhso, monkeypatch):
    """NHSO refuses the hospital's token during an outage of its own, then accepts the same
    token again: /v1/nhso/status says so at once with what to do, and the held claim is
    sent on the short first schedule, long before tokenRetry."""
    monkeypatch.setattr(token_mod, "TOKEN_FIRST_RETRY", 0.3)
    client = await make_agent(token_retry=300)
    state = server_state(nhso)
    await nhso_control(nhso, "/_control/tokens", {TOKEN: None})        # NHSO refuses it
    claim_id = (await submit(client, visit(PID_N + 8, 1, "10699-VN000081")))["id"]
    [event] = await events_of(client, "nhso.token", 1)
    assert event["state"] == "refused" and "Invalid token." in event["message"]
    status = await (await client.get("/v1/nhso/status")).json()
    assert status["token"]["state"] == "refused" and status["token"]["since"]
    assert "token set" in status["token"]["action_en"] and status["token"]["action_th"]
    assert (await claim_status(client, claim_id))["status"] == "queued"
    await nhso_control(nhso, "/_control/tokens", {TOKEN: "10699"})     # accepted again
    view = await wait_status(client, claim_id, "sent")
    assert_each_once_with_its_own_code(state, [view])
    status = await (await client.get("/v1/nhso/status")).json()
    assert status["token"]["state"] == "accepted"
    events = [p["state"] for t, p in client.events if t == "nhso.token"]
    assert events == ["refused", "accepted"]


# -- NHSO's answer quirks ---------------------------------------------------------------------

async def test_second_status_format_and_a_bom_recover_a_lost_answer(make_agent, nhso):
    client = await make_agent()
    state = server_state(nhso)
    await nhso_control(nhso, "/_control/quirks", {"statusFormat": 2, "bom": True})
    body = visit(PID_N + 9, 1, "10699-VN000091")
    state.rules = [Rule("claim", ["drop_after"], count=1, key=body["transactionId"])]
    view = await wait_status(client, (await submit(client, body))["id"], "sent")
    assert view["recovered"] is True
    assert_each_once_with_its_own_code(state, [view])


@pytest.mark.parametrize(("mode", "code"), [("empty", "nhso_empty_reply"),
                                             ("html", "nhso_proxy_page")])
async def test_empty_and_proxy_answers_are_typed_and_the_claim_is_sent_once(
        make_agent, nhso, mode, code):
    client = await make_agent(retry_base=0.3, retry_max=0.3, in_doubt_delay=0.3,
                              in_doubt_recheck=0.3)
    state = server_state(nhso)
    body = visit(PID_N + 10, 1, f"10699-VN0001{len(mode)}")
    state.rules = [Rule("claim", [mode], count=1, status=502, key=body["transactionId"])]
    claim_id = (await submit(client, body))["id"]

    async def reported():
        view = await claim_status(client, claim_id)
        return view if view["error"] and view["error"]["code"] == code else None
    held = await until(reported, f"the {code} error")
    assert held["error"]["message"]
    view = await wait_status(client, claim_id, "sent")
    assert_each_once_with_its_own_code(state, [view])


async def nhso_control(server: Any, path: str, body: Any) -> Any:
    import aiohttp
    async with aiohttp.ClientSession() as http:
        async with http.post(server.make_url(path), json=body) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()
