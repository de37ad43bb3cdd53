"""Known answers for NHSO: golden request and reply bodies (tests/known/nhso/) written by hand
from docs/reference.md ("NHSO's services") and NHSO in the field (docs/reference.md).

The agent's client, validators and claim matching were so far tested against our own
contract server (testrig/nhso_server.py), which our own hands wrote to agree with them. Here
each side meets bodies that come from the documents instead: the client must send exactly
the documented request and decode every golden reply (a UTF-8 BOM, an empty body, both
Check Authen Status formats, refusals); the validators must pass the golden requests
unchanged and refuse the bad ones; and the contract server, which stands for NHSO in the
other tests, must accept the golden requests and answer in the golden shapes.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agent.errors import AgentError, NhsoRejected, NhsoTokenInvalid, NhsoUnavailable
from agent.nhso.client import ClaimAnswer, NhsoClient, nhso_message
from agent.nhso.lookups import coverage_fields
from agent.nhso.matching import Verdict, Visit, records, settle
from agent.nhso.settings import NhsoSettings
from agent.nhso.validation import ValidationFailed, validate_claim, validate_confirm_save
from testrig.nhso_server import make_app

GOLDEN = Path(__file__).resolve().parent / "known" / "nhso"
TOKEN = "golden-token"
HCODE = "10699"


def raw(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def golden(name: str) -> Any:
    # The BOM files hold a BOM on purpose: reading them here must not depend on the agent.
    return json.loads(raw(name).decode("utf-8-sig"))


REQUEST: dict[str, Any] = golden("claim.request.json")
BAD = golden("claim.bad.json")["cases"]
REPLIES = golden("replies.json")
CONFIRM = golden("confirm_save.request.json")
CONFIRM_CALLERS = golden("confirm_save.request.callers.json")["bodies"]
SERVICE_DAY = "2025-11-07"          # the golden claim's serviceDateTime, Bangkok day
NOW_MS = REQUEST["invoiceDateTime"] + 3_600_000


def settings(base_url: str = "") -> NhsoSettings:
    return NhsoSettings(hcode=HCODE, source_id="TCAGENT", recorder_pid="3100600512341",
                        base_url=base_url, token_hcode=HCODE)


def bad_body(case: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(REQUEST)
    body.update(case.get("set", {}))
    for name in case.get("drop", []):
        body.pop(name)
    return body


def canonical(value: Any) -> str:
    """JSON text that tells 350.5 from "350.5" and 0 from 0.0 from False."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def verdict(body: dict[str, Any], status: dict[str, Any], used: set[str] | None = None) -> Verdict:
    """The sender's verdict on one claim in doubt (the only one of its patient-day)."""
    return settle("ours", [Visit.of("ours", body)], records(status), used or set())


def match_history(body: dict[str, Any], status: dict[str, Any],
                  used: set[str] | None = None) -> str | None:
    """The code that settles the claim; None when NHSO has no record of it."""
    found = verdict(body, status, used)
    assert not found.candidates, f"needs review: {found.reason}"
    return found.code


# -- the validators ---------------------------------------------------------------------------

def test_golden_claim_passes_validation_unchanged():
    out = validate_claim(REQUEST, settings(), now_ms=NOW_MS)
    assert canonical(out) == canonical(REQUEST)


@pytest.mark.parametrize("case", BAD, ids=[c["why"] for c in BAD])
def test_bad_claims_are_refused_naming_the_field(case):
    with pytest.raises(ValidationFailed) as refused:
        validate_claim(bad_body(case), settings(), now_ms=NOW_MS)
    assert case["field"] in {e["field"] for e in refused.value.errors}


def test_golden_confirm_save_passes_validation_unchanged():
    assert canonical(validate_confirm_save(CONFIRM, settings())) == canonical(CONFIRM)


@pytest.mark.parametrize("body", CONFIRM_CALLERS)
def test_confirm_save_as_callers_send_it_is_accepted(body):
    # Issue 14: empty hn/hcode are absent (hcode defaults to ours), the phone is normalised.
    out = validate_confirm_save({k: v for k, v in body.items()}, settings())
    assert out["hcode"] == HCODE and "hn" not in out
    assert out["mobile"].isdigit() and out["mobile"].startswith("0")


# -- the client: what it sends ----------------------------------------------------------------

class Capture:
    """A stand-in for NHSO that records each request and answers one golden reply."""

    def __init__(self, body: bytes, status: int = 200,
                 content_type: str = "application/json") -> None:
        self.body, self.status, self.content_type = body, status, content_type
        self.seen: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append({"method": request.method, "path": request.path,
                          "query": dict(request.query), "headers": dict(request.headers),
                          "body": await request.read()})
        return web.Response(body=self.body, status=self.status,
                            headers={"Content-Type": self.content_type})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app


async def client_for(aiohttp_server: Any, capture: Capture) -> NhsoClient:
    server = await aiohttp_server(capture.app())

    async def token() -> str:
        return TOKEN

    return NhsoClient(settings(str(server.make_url(""))), token)


async def test_client_sends_the_golden_claim_exactly(aiohttp_server):
    capture = Capture(raw("claim.reply.json"))
    client = await client_for(aiohttp_server, capture)
    try:
        await client.send_claim(copy.deepcopy(REQUEST))
    finally:
        await client.close()
    [seen] = capture.seen
    assert (seen["method"], seen["path"]) == ("POST", "/nhsoendpoint/api/nhso-claim-detail")
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert seen["headers"]["Content-Type"].startswith("application/json")
    assert canonical(json.loads(seen["body"])) == canonical(REQUEST)


@pytest.mark.parametrize("service_code", [None, "PG0060001"])
async def test_client_asks_check_authen_status_as_documented(aiohttp_server, service_code):
    capture = Capture(raw("authen_status.reply.json"))
    client = await client_for(aiohttp_server, capture)
    try:
        await client.check_authen_status(REQUEST["pid"], SERVICE_DAY, service_code)
    finally:
        await client.close()
    [seen] = capture.seen
    assert (seen["method"], seen["path"]) == ("GET", "/authencodestatus/api/check-authen-status")
    want = {"personalId": REQUEST["pid"], "serviceDate": SERVICE_DAY}
    if service_code:
        want["serviceCode"] = service_code
    assert seen["query"] == want
    assert seen["headers"]["Authorization"] == f"Bearer {TOKEN}"


async def test_client_asks_right_search_as_documented(aiohttp_server):
    capture = Capture(raw("right_search.reply.json"))
    client = await client_for(aiohttp_server, capture)
    try:
        await client.right_search(REQUEST["pid"], SERVICE_DAY)
    finally:
        await client.close()
    [seen] = capture.seen
    assert (seen["method"], seen["path"]) == ("GET", "/nhsoendpoint/api/v2/right-search")
    assert seen["query"] == {"pid": REQUEST["pid"], "checkDate": f"{SERVICE_DAY}T00:00:00"}


# -- the client: what it makes of each golden reply --------------------------------------------

async def outcome_of(aiohttp_server: Any, entry: dict[str, Any], call: str) -> Any:
    capture = Capture(raw(entry["file"]), entry["status"], entry["content_type"])
    client = await client_for(aiohttp_server, capture)
    try:
        if call == "claim":
            return await client.send_claim(copy.deepcopy(REQUEST))
        if call == "status":
            return await client.check_authen_status(REQUEST["pid"], SERVICE_DAY)
        return await client.right_search(REQUEST["pid"], SERVICE_DAY)
    except AgentError as exc:
        return exc
    finally:
        await client.close()


def check_outcome(entry: dict[str, Any], got: Any) -> None:
    outcome = entry["outcome"]
    if outcome == "sent":
        assert got == ClaimAnswer(entry["authenCode"], entry["seq"])
    elif outcome == "token_invalid":
        assert isinstance(got, NhsoTokenInvalid), got
    elif outcome == "rejected":
        assert isinstance(got, NhsoRejected), got
        assert entry["says"] in str(got)
    elif outcome == "not_final":
        # Neither a code nor a refusal: the claim stays queued (a token problem or in doubt).
        assert isinstance(got, (NhsoTokenInvalid, NhsoUnavailable)), got
    elif outcome == "object":
        assert isinstance(got, dict), got
        assert set(entry["has"]) <= set(got)
    elif outcome == "error":
        assert isinstance(got, AgentError), got
    else:
        raise AssertionError(f"unknown outcome {outcome}")


@pytest.mark.parametrize("entry", REPLIES["claim"], ids=[e["name"] for e in REPLIES["claim"]])
async def test_client_decodes_golden_claim_replies(aiohttp_server, entry):
    check_outcome(entry, await outcome_of(aiohttp_server, entry, "claim"))


@pytest.mark.parametrize("entry", REPLIES["status"], ids=[e["name"] for e in REPLIES["status"]])
async def test_client_decodes_golden_status_replies(aiohttp_server, entry):
    check_outcome(entry, await outcome_of(aiohttp_server, entry, "status"))


@pytest.mark.parametrize("entry", REPLIES["rights"], ids=[e["name"] for e in REPLIES["rights"]])
async def test_client_decodes_golden_rights_replies(aiohttp_server, entry):
    got = await outcome_of(aiohttp_server, entry, "rights")
    check_outcome(entry, got)
    assert canonical(got) == canonical(golden(entry["file"]))


def test_coverage_fields_of_the_golden_rights():
    fields = coverage_fields(golden("right_search.reply.json"))
    want = {k: v for k, v in REPLIES["coverage_of_rights"].items() if not k.startswith("_")}
    assert {k: fields.get(k) for k in want} == want
    assert isinstance(fields["claimTypes"], list)


def test_nhso_message_reads_every_documented_error_key():
    """docs/reference.md: a failure is one of error, message, dataError, errors[]."""
    assert "Invalid token." in nhso_message(golden("claim.reply.invalid-token.json"))
    assert "Invalid token." in nhso_message(golden("claim.reply.invalid-token.errors.json"))
    assert "ข้อมูลไม่ผ่านการตรวจสอบ" in nhso_message(golden("claim.reply.data-error.json"))
    assert "invalid personal id" in nhso_message(golden("claim.reply.errors.json"))


# -- matching a claim in Check Authen Status ---------------------------------------------------

@pytest.mark.parametrize("file", ["authen_status.reply.json", "authen_status.reply.bom.json"])
async def test_the_golden_claim_is_found_in_check_authen_status(aiohttp_server, file):
    capture = Capture(raw(file), 200, "application/json;charset=UTF-8")
    client = await client_for(aiohttp_server, capture)
    try:
        status = await client.check_authen_status(REQUEST["pid"], SERVICE_DAY)
    finally:
        await client.close()
    want = REPLIES["match"]["claimCode"]
    assert match_history(REQUEST, status) == want
    # A code another claim of ours already holds is never taken twice, and the 13:45 visit
    # of the same patient (or another hospital's 09:30 one) is never taken instead: NHSO
    # does not have this claim.
    assert match_history(REQUEST, status, {want}) is None


def test_the_golden_claim_is_found_in_format_2():
    status = golden("authen_status.reply.format2.json")
    assert match_history(REQUEST, status) == REPLIES["match"]["claimCode"]
    assert match_history(REQUEST, status, {REPLIES["match"]["claimCode"]}) is None


# -- the contract server that stands for NHSO in the other tests ------------------------------

@pytest.fixture
async def nhso(aiohttp_server: Any) -> Any:
    return await aiohttp_server(make_app({TOKEN: HCODE}))


def keys_tree(value: Any) -> Any:
    """The shape of a JSON value: keys (recursively) and types, not values."""
    if isinstance(value, dict):
        return {k: keys_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [keys_tree(value[0])] if value else []
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else type(value).__name__


async def test_contract_server_accepts_the_golden_claim_in_the_golden_shape(nhso):
    async with nhso_session(nhso) as http:
        async with http.post("/nhsoendpoint/api/nhso-claim-detail", json=REQUEST) as resp:
            assert resp.status == 200, await resp.text()
            answer = await resp.json()
        assert keys_tree(answer) == keys_tree(golden("claim.reply.json"))
        assert re.fullmatch(r"EP\d+", answer["authenCode"])

        query = {"personalId": REQUEST["pid"], "serviceDate": SERVICE_DAY}
        async with http.get("/authencodestatus/api/check-authen-status", params=query) as resp:
            assert resp.status == 200, await resp.text()
            status = await resp.json()
    want = golden("authen_status.reply.json")
    assert set(status) == set(want)
    [entry] = status["serviceHistories"]
    assert keys_tree(entry) == keys_tree(want["serviceHistories"][0])
    assert entry["claimCode"] == answer["authenCode"]
    # NHSO in the field (docs/reference.md): EP codes are endpoint confirmations, sourceChannel
    # ENDPOINT.
    assert entry["sourceChannel"] == "ENDPOINT"
    assert entry["serviceDateTime"] == "2025-11-07T09:30:00"      # Bangkok wall time
    assert match_history(REQUEST, status) == answer["authenCode"]


@pytest.mark.parametrize("case", [c for c in BAD if c["nhso"]],
                         ids=[c["why"] for c in BAD if c["nhso"]])
async def test_contract_server_refuses_the_bad_claims_like_nhso(nhso, case):
    async with nhso_session(nhso) as http:
        async with http.post("/nhsoendpoint/api/nhso-claim-detail", json=bad_body(case)) as resp:
            assert resp.status == 400
            body = await resp.json()
    assert set(body) & {"error", "message", "dataError", "errors"}
    assert nhso_message(body)


async def test_contract_server_answers_a_bad_token_in_the_golden_shape(nhso):
    async with nhso_session(nhso, token="not-the-token") as http:
        async with http.post("/nhsoendpoint/api/nhso-claim-detail", json=REQUEST) as resp:
            assert resp.status == 401
            body = await resp.json()
    assert body == golden("claim.reply.invalid-token.json")


async def test_contract_server_right_search_in_the_golden_shape(nhso):
    query = {"pid": REQUEST["pid"], "checkDate": f"{SERVICE_DAY}T00:00:00"}
    async with nhso_session(nhso) as http:
        async with http.get("/nhsoendpoint/api/v2/right-search", params=query) as resp:
            assert resp.status == 200
            body = await resp.json()
    want = golden("right_search.reply.json")
    assert set(body) >= set(want)
    assert set(body["funds"][0]) >= set(want["funds"][0])


async def test_client_and_contract_server_close_and_find_the_golden_claim(nhso):
    async def token() -> str:
        return TOKEN

    client = NhsoClient(settings(str(nhso.make_url(""))), token)
    try:
        answer = await client.send_claim(copy.deepcopy(REQUEST))
        status = await client.check_authen_status(REQUEST["pid"], SERVICE_DAY, "PG0060001")
    finally:
        await client.close()
    assert match_history(REQUEST, status) == answer.authen_code


def nhso_session(server: Any, token: str = TOKEN) -> Any:
    import aiohttp

    return aiohttp.ClientSession(base_url=str(server.make_url("")),
                                 headers={"Authorization": f"Bearer {token}"})
