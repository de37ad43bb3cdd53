"""The NHSO service in one process: agent routes + sender against the contract server app.

Unit level for the sender's decisions (retry, fail, recover, flag, purge) and the compat
routes; the multi-process proof with kill -9 is in test_nhso_outbox.py. The keyring here is
an in-memory backend (the real Secret Service is exercised in test_nhso_token.py and
test_nhso_outbox.py).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import ssl
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from agent.errors import NhsoUnavailable
from agent.nhso.routes import NHSO_SERVICE, setup_nhso
from agent.nhso.settings import load_settings
from agent.nhso.token import TokenStore
from testrig.nhso_server import STATE, make_app
from testrig.nhso_support import (
    HCODE,
    RECORDER_PID,
    SOURCE_ID,
    TOKEN,
    MemoryKeyring,
    claim_body,
    patient_pid,
)
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


async def test_claim_is_sent_once_with_events(make_agent, nhso):
    client = await make_agent()
    body = claim_body(1)
    first = await submit(client, body)
    again = await submit(client, body)
    assert again["id"] == first["id"] and again["duplicate"] is True
    view = await wait_status(client, first["id"], "sent")
    await events_of(client, "claim.sent", 1)
    assert view["authenCode"].startswith("EP")
    assert server_state(nhso).claim_counts == {body["transactionId"]: 1}
    assert view["claim"]["hcode"] == HCODE and view["claim"]["sourceId"] == SOURCE_ID
    assert view["claim"]["recorderPid"] == RECORDER_PID
    types = [t for t, _ in client.events]
    assert types == ["claim.queued", "claim.sent"]
    sent = client.events[1][1]
    assert sent["authenCode"] == view["authenCode"] and sent["id"] == first["id"]
    assert "pid" not in sent   # events carry no personal data


async def test_same_transaction_other_body_conflicts(make_agent):
    client = await make_agent()
    body = claim_body(2)
    await submit(client, body)
    resp = await client.post("/v1/claims", json={**body, "totalAmount": 999.0,
                                                 "privilegeAmount": 999.0})
    assert resp.status == 409
    assert (await resp.json())["code"] == "claim_conflict"


async def test_rejected_claim_fails_without_retry_and_can_be_corrected(make_agent, nhso):
    client = await make_agent()
    body = claim_body(3)
    server_state(nhso).reject.add(body["transactionId"])
    claim = await submit(client, body)
    view = await wait_status(client, claim["id"], "failed")
    assert view["error"]["code"] == "nhso_rejected"
    assert "rejected by test rule" in view["error"]["message"]
    failed = await events_of(client, "claim.failed", 1)
    assert "rejected by test rule" in failed[0]["message"]
    await asyncio.sleep(0.3)   # several retry periods: a 4xx must not be retried
    assert server_state(nhso).requests["claim"] == 1
    assert (await claim_status(client, claim["id"]))["attempts"] == 1
    # The HIS corrects the claim and sends it again under the same transactionId.
    server_state(nhso).reject.clear()
    again = await submit(client, {**body, "mainInsclCode": "OFC"})
    assert again["id"] == claim["id"] and again["duplicate"] is False
    view = await wait_status(client, claim["id"], "sent")
    assert view["claim"]["mainInsclCode"] == "OFC"
    assert server_state(nhso).claim_counts[body["transactionId"]] == 1


async def test_staff_retry_requeues_refused_claims_once(make_agent, nhso):
    client = await make_agent()
    body = claim_body(4)
    server_state(nhso).reject.add(body["transactionId"])
    claim = await submit(client, body)
    await wait_status(client, claim["id"], "failed")
    bad = await client.post("/v1/claims/retry", json={"status": "sent"})
    assert bad.status == 400 and (await bad.json())["errors"][0]["field"] == "status"
    # nothing to requeue while waiting claims are simply woken
    resp = await client.post("/v1/claims/retry", json={"status": "queued"})
    assert resp.status == 200 and (await resp.json())["requeued"] == 0
    assert (await claim_status(client, claim["id"]))["status"] == "failed"
    server_state(nhso).reject.clear()          # the cause of the refusal is fixed
    resp = await client.post("/v1/claims/retry", json={"status": "failed"})
    assert resp.status == 200 and (await resp.json())["requeued"] == 1
    view = await wait_status(client, claim["id"], "sent")
    assert view["authenCode"].startswith("EP")
    assert server_state(nhso).claim_counts[body["transactionId"]] == 1
    queued = [p for t, p in client.events if t == "claim.queued" and p["id"] == claim["id"]]
    assert len(queued) == 2                     # submitted, then requeued by staff


async def test_5xx_and_drops_are_retried_and_recovered_without_resending(make_agent, nhso):
    # The request timeout is generous (a busy machine must not time out a normal answer,
    # which would add an attempt and a recovery) and the slow answer far beyond it.
    client = await make_agent(request_timeout=4.0)
    state = server_state(nhso)
    # First attempts: 503 (not processed), then processed-but-connection-dropped, then
    # processed-but-answer-too-late: the last two are found by Check Authen Status.
    from testrig.nhso_server import Rule
    state.rules = [Rule("claim", ["error"], count=1),
                   Rule("claim", ["drop_after"], count=1),
                   Rule("claim", ["slow"], count=1, delay=30.0)]
    ids = []
    for n in range(10, 13):
        ids.append((await submit(client, claim_body(n)))["id"])
    views = [await wait_status(client, i, "sent") for i in ids]
    assert all(c == 1 for c in state.claim_counts.values()) and len(state.claim_counts) == 3
    assert sum(v["attempts"] for v in views) == 4   # 503 + retry, two recovered
    sent = await events_of(client, "claim.sent", 3)
    assert len([p for p in sent if p["recovered"]]) == 2
    issued = {i["transactionId"]: i["authenCode"] for i in state.issued}
    for v in views:
        assert v["authenCode"] == issued[v["transactionId"]]
    for task in list(state.tasks):
        task.cancel()                   # the slow answer nobody waits for any more


async def test_status_check_failure_never_leads_to_resend(make_agent, nhso):
    client = await make_agent()
    state = server_state(nhso)
    from testrig.nhso_server import Rule
    state.rules = [Rule("claim", ["drop_after"], count=1), Rule("status", ["error"], count=3)]
    claim = await submit(client, claim_body(20))
    view = await wait_status(client, claim["id"], "sent")
    assert state.claim_counts == {view["transactionId"]: 1}
    assert state.requests["status"] == 4 and state.requests["claim"] == 1


async def test_invalid_token_keeps_claim_queued_until_a_good_token(make_agent, nhso):
    # tokenRetry is long: it is the new token that wakes the claim up.
    client = await make_agent(token="wrong-token-000000000", token_retry=300)
    claim = await submit(client, claim_body(30))

    async def token_error():
        view = await claim_status(client, claim["id"])
        return view["error"] and view["error"]["code"] == "nhso_token_invalid"
    await until(token_error, "token error recorded")
    view = await claim_status(client, claim["id"])
    assert view["status"] in ("queued", "sending") and "Invalid token." in view["error"]["message"]
    assert not server_state(nhso).claim_counts
    client.keyring.set_password("thaicard-agent", "nhso-token", TOKEN)   # token set
    await wait_status(client, claim["id"], "sent")


async def test_no_token_refuses_claims(make_agent):
    client = await make_agent(token=None)
    resp = await client.post("/v1/claims", json=claim_body(40))
    assert resp.status == 503
    assert (await resp.json())["code"] == "nhso_token_missing"
    assert await client.service.lookups.coverage_for(patient_pid(40)) is None


async def test_claims_for_another_hcode_than_the_token_are_refused(make_agent):
    client = await make_agent(token_hcode="11111")
    resp = await client.post("/v1/claims", json=claim_body(42))
    body = await resp.json()
    assert resp.status == 503 and body["code"] == "nhso_not_configured"
    assert "11111" in body["detail"]


async def test_missing_settings_refuse_claims(make_agent):
    client = await make_agent(source_id="")
    resp = await client.post("/v1/claims", json=claim_body(41))
    assert resp.status == 503
    body = await resp.json()
    assert body["code"] == "nhso_not_configured" and "sourceId" in body["detail"]


async def test_unsent_claims_are_flagged_due_once(make_agent, nhso):
    from testrig.nhso_server import Rule
    server_state(nhso).rules = [Rule("claim", ["error"], rate=1.0)]
    yesterday = int((time.time() - 86400) * 1000)
    client = await make_agent()
    old = await submit(client, claim_body(50, serviceDateTime=yesterday,
                                          invoiceDateTime=yesterday))
    await until(lambda: any(t == "claim.due" for t, _ in client.events), "claim.due")
    # The claim keeps being retried (every answer is a 503); three more attempts after the
    # flag, counted at the server, span several due checks: the flag is still raised once.
    attempts = server_state(nhso).requests["claim"]
    await until(lambda: server_state(nhso).requests["claim"] >= attempts + 3,
                "three more attempts")
    due = [p for t, p in client.events if t == "claim.due"]
    assert [d["id"] for d in due] == [old["id"]]
    assert due[0]["serviceDate"] and due[0]["error"]["code"] == "nhso_unavailable"
    assert (await claim_status(client, old["id"]))["due"] is True


async def test_due_flag_follows_the_bangkok_service_day(tmp_path):
    from agent.nhso.outbox import Outbox
    from agent.nhso.settings import NhsoSettings
    from agent.nhso.validation import validate_claim
    outbox = Outbox(tmp_path / "o.sqlite3")
    await outbox.open()
    bkk = dt.timezone(dt.timedelta(hours=7))
    ms = int(dt.datetime(2026, 3, 10, 9, 0, tzinfo=bkk).timestamp() * 1000)
    settings = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID)

    async def add(n: int):
        claim, _ = await outbox.submit(validate_claim(claim_body(n, now_ms=ms), settings,
                                                      now_ms=ms))
        assert claim.service_date == "2026-03-10"
        return claim
    queued = await add(1)
    sent = await add(2)
    await outbox.mark_sent(sent.id, "EP0000000001", "1")
    failed = await add(3)
    await outbox.mark_failed(failed.id, "nhso_rejected", "no")
    # 19:59 Bangkok (12:59 UTC) on the service day: not yet.
    assert await outbox.flag_due(dt.datetime(2026, 3, 10, 12, 59, tzinfo=dt.UTC),
                                 "20:00") == []
    flagged = await outbox.flag_due(dt.datetime(2026, 3, 10, 20, 0, tzinfo=bkk), "20:00")
    assert {c.id for c in flagged} == {queued.id, failed.id}
    assert await outbox.flag_due(dt.datetime(2026, 3, 11, 9, 0, tzinfo=bkk), "20:00") == []
    late = await add(4)
    assert [c.id for c in await outbox.flag_due(dt.datetime(2026, 3, 11, 0, 1, tzinfo=bkk),
                                                "23:00")] == [late.id]
    await outbox.close()


async def test_retention_purges_sent_claims(make_agent, tmp_path):
    client = await make_agent(retention_days=1)
    claim = await submit(client, claim_body(60))
    await wait_status(client, claim["id"], "sent")
    outbox = client.service.outbox
    await outbox._run(outbox.db.execute, "UPDATE claims SET updated_at = updated_at - 2 * 86400")
    assert await outbox.purge(1) == 1
    resp = await client.get(f"/v1/claims/{claim['id']}")
    assert resp.status == 404 and (await resp.json())["code"] == "claim_not_found"


async def test_interrupted_send_is_checked_at_nhso_after_restart(make_agent, nhso, tmp_path):
    """A claim left 'sending' with in_doubt (a crash after the request left) that NHSO
    did record is completed from Check Authen Status, not sent again."""
    from testrig.nhso_server import Rule
    client = await make_agent()
    state = server_state(nhso)
    state.rules = [Rule("claim", ["slow"], count=1, delay=30)]
    claim = await submit(client, claim_body(70))
    await until(lambda: state.claim_counts, "NHSO recorded the claim")
    await client.close()    # the agent stops while NHSO still holds the answer
    db = sqlite3.connect(tmp_path / "data" / "nhso-outbox.sqlite3")
    row = db.execute("SELECT status, in_doubt FROM claims").fetchone()
    db.close()
    assert row == ("queued", 1)
    again = await make_agent()
    view = await wait_status(again, claim["id"], "sent")
    assert state.claim_counts == {view["transactionId"]: 1}
    assert view["authenCode"] == state.issued[0]["authenCode"]


async def test_coverage_lookup_fields_and_cache(make_agent, nhso):
    client = await make_agent()
    pid = patient_pid(80)
    server_state(nhso).people[pid] = {"funds": [{
        "mainInscl": {"id": "OFC", "name": "สิทธิข้าราชการ"},
        "subInscl": {"id": "O1", "name": "ข้าราชการ"},
        "hospMain": {"hcode": "10699", "hname": "รพ.ทดสอบ"}, "hospSub": None,
        "paidModel": 3, "startDateTime": "2024-01-01T00:00:00",
        "expireDateTime": "2030-01-01T00:00:00"}]}
    fields = await client.service.lookups.coverage_for(pid)
    assert fields["mainInscl"] == "(OFC) สิทธิข้าราชการ"
    assert fields["subInscl"] == "(O1) ข้าราชการ"
    assert fields["hospMain"] == {"hcode": "10699", "hname": "รพ.ทดสอบ"}
    assert fields["hospSub"] is None and fields["paidModel"] == "3"
    assert fields["claimTypes"][0]["claimType"] == "PG0060001"
    assert await client.service.lookups.coverage_for(pid) == fields
    assert server_state(nhso).requests["rights"] == 1     # the second came from the cache
    client.service.lookups.forget_coverage(pid)
    await client.service.lookups.coverage_for(pid)
    assert server_state(nhso).requests["rights"] == 2


async def test_coverage_lookup_failure_is_typed(make_agent, nhso):
    from testrig.nhso_server import Rule
    client = await make_agent()
    server_state(nhso).rules = [Rule("rights", ["error"], count=1)]
    with pytest.raises(NhsoUnavailable):
        await client.service.lookups.coverage_for(patient_pid(81))


class _FrozenDateTime(dt.datetime):
    """``datetime`` whose ``now()`` is one fixed moment (``moment`` set by the test)."""

    moment: dt.datetime

    @classmethod
    def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:
        return cls.moment.astimezone(tz) if tz else cls.moment.astimezone().replace(tzinfo=None)


async def test_authen_status_and_compat_latest_codes(make_agent, nhso, monkeypatch):
    import types

    import agent.nhso.lookups as service_module

    client = await make_agent()
    pid = patient_pid(90)
    now_ms = int(time.time() * 1000)
    # The compat routes look at "today" in Bangkok. The service's clock is pinned to the
    # claim's moment so that they always find it, even when the test runs across midnight.
    _FrozenDateTime.moment = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC)
    monkeypatch.setattr(service_module, "dt", types.SimpleNamespace(
        datetime=_FrozenDateTime, date=dt.date, timezone=dt.timezone, timedelta=dt.timedelta))
    claim = await submit(client, claim_body(90, serviceDateTime=now_ms - 1000,
                                            invoiceDateTime=now_ms - 1000))
    view = await wait_status(client, claim["id"], "sent")
    resp = await client.get("/v1/nhso/authen-status",
                            params={"pid": pid, "date": view["serviceDate"]})
    assert resp.status == 200
    status = await resp.json()
    assert [h["claimCode"] for h in status["serviceHistories"]] == [view["authenCode"]]
    resp = await client.get(f"/api/nhso-service/latest-authen-code/{pid}")
    latest = await resp.json()
    assert latest["claimCode"] == view["authenCode"] and latest["hcode"] == HCODE
    assert latest["claimType"] == "PG0060001"
    resp = await client.get(f"/api/nhso-service/latest-5-authen-code-all-hospital/{pid}")
    assert [i["claimCode"] for i in await resp.json()] == [view["authenCode"]]
    other = patient_pid(91)
    resp = await client.get(f"/api/nhso-service/latest-authen-code/{other}")
    none = await resp.json()
    assert resp.status == 200 and none["claimCode"] is None and none["claimType"] is None
    resp = await client.get("/api/nhso-service/latest-authen-code/1234567890123")
    body = await resp.json()
    assert resp.status == 400 and body["status"] == 400 and body["path"].endswith("1234567890123")
    assert "check digit" in body["errors"][0]["defaultMessageEn"]
    assert "หลักตรวจสอบ" in body["errors"][0]["defaultMessage"]     # Thai for staff
    resp = await client.get("/v1/nhso/authen-status", params={"pid": pid, "date": "2025-13-01"})
    assert resp.status == 400 and (await resp.json())["errors"][0]["field"] == "date"


async def test_compat_confirm_save(make_agent, nhso):
    client = await make_agent()
    body = {"pid": patient_pid(100), "claimType": "PG0060001", "mobile": "0812345678",
            "correlationId": "5b7c8a4e-0000-4000-8000-000000000001", "hn": "HN001"}
    resp = await client.post("/api/nhso-service/confirm-save", json=body)
    assert resp.status == 200
    answer = await resp.json()
    assert answer["claimCode"].startswith("PP") and len(answer["claimCode"]) == 12
    assert {k: answer[k] for k in body} == body and answer["hcode"] == HCODE
    # A retry of the same confirmation gets the same code; it is not requested again.
    resp = await client.post("/api/nhso-service/confirm-save", json=body)
    assert (await resp.json())["claimCode"] == answer["claimCode"]
    assert server_state(nhso).requests["authen"] == 1
    resp = await client.post("/api/nhso-service/confirm-save",
                             json={**body, "claimType": "PG0130001"})
    assert resp.status == 500 and "already confirmed" in (await resp.json())["message"]
    resp = await client.post("/api/nhso-service/confirm-save", json={**body, "pid": "1"})
    err = await resp.json()
    assert resp.status == 400 and err["errors"][0]["field"] == "pid"
    assert err["errors"][0]["defaultMessage"]


async def test_compat_confirm_save_upstream_failure_says_unverified(make_agent, nhso):
    from testrig.nhso_server import Rule
    client = await make_agent()
    server_state(nhso).rules = [Rule("authen", ["error"], count=1, status=404)]
    resp = await client.post("/api/nhso-service/confirm-save", json={
        "pid": patient_pid(101), "claimType": "PG0060001", "mobile": "",
        "correlationId": "abc-1"})
    body = await resp.json()
    assert resp.status == 500 and body["code"] == "nhso_unverified"
    assert "unverified" in body["message"] and "claimCode" not in body
    assert "ยังไม่ได้ยืนยัน" in body["errors"][0]["defaultMessage"]


async def test_status_route_never_shows_the_token(make_agent):
    client = await make_agent()
    resp = await client.get("/v1/nhso/status")
    text = await resp.text()
    assert resp.status == 200 and TOKEN not in text
    body = await resp.json()
    assert body["tokenConfigured"] is True and body["missing"] == []


async def test_late_processing_is_found_after_the_in_doubt_delay(make_agent, nhso):
    """NHSO records a request only after the agent gave up waiting: the agent waits
    ``in_doubt_delay`` before asking, finds it, and does not send it again. (The guarantee
    holds while NHSO records within that delay; docs/nhso.md.)"""
    from testrig.nhso_server import Rule
    client = await make_agent(request_timeout=0.5, in_doubt_delay=3.0)
    state = server_state(nhso)
    state.rules = [Rule("claim", ["late"], count=1, delay=1.0)]
    claim = await submit(client, claim_body(110))
    view = await wait_status(client, claim["id"], "sent")
    assert view["recovered"] is True and view["attempts"] == 1
    assert state.claim_counts == {view["transactionId"]: 1}


def _self_signed(tmp_path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


async def test_tls_is_verified_against_the_system_store(aiohttp_server, make_agent, tmp_path,
                                                        monkeypatch):
    cert, key = _self_signed(tmp_path)
    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ssl.load_cert_chain(cert, key)
    https = await aiohttp_server(make_app({TOKEN: HCODE}), ssl=server_ssl)
    base = str(https.make_url("")).rstrip("/")
    assert base.startswith("https://")
    pid = patient_pid(120)
    # A certificate nobody installed is refused: nothing is sent, the token included.
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    client = await make_agent(base_url=base)
    resp = await client.get("/v1/nhso/authen-status", params={"pid": pid})
    body = await resp.json()
    # Typed, and it says which certificate failed and why (TLS is never weakened).
    assert resp.status == 503 and body["code"] == "nhso_tls_failed"
    assert "Certificate" in body["detail"] and "self-signed" in body["detail"]
    assert "127.0.0.1" in body["detail"]
    assert https.app[STATE].requests["status"] == 0
    # Trusted once it is in the store the system uses (as IT installs a proxy CA).
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    client = await make_agent(base_url=base)
    resp = await client.get("/v1/nhso/authen-status", params={"pid": pid})
    assert resp.status == 200 and https.app[STATE].requests["status"] == 1


async def test_a_tls_handshake_failure_says_what_failed(make_agent, nhso):
    """An https:// address answered by something that does not speak TLS (a proxy or a
    wrong port): typed nhso_tls_failed naming the handshake and OpenSSL's reason; nothing
    was sent, and the agent never retries with weaker settings."""
    base = str(nhso.make_url("")).rstrip("/").replace("http://", "https://")
    client = await make_agent(base_url=base)
    resp = await client.get("/v1/nhso/authen-status", params={"pid": patient_pid(121)})
    body = await resp.json()
    assert resp.status == 503 and body["code"] == "nhso_tls_failed", body
    assert "TLS handshake failed" in body["detail"]
    assert "WRONG_VERSION_NUMBER" in body["detail"].upper().replace(" ", "_")
    assert server_state(nhso).requests["status"] == 0
