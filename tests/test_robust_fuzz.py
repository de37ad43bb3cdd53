"""Fuzzing: the OpenAPI document against a running agent (schemathesis), and the card
decoders and APDU machine on inputs a broken or hostile card could send (hypothesis).

The API fuzz runs against a real ``thaicard-agent serve --demo`` process. Every response
must match the document (status code, content type, headers, body schema). A 5xx is
allowed only as a typed agent error that the document lists for that operation: the
NHSO-compatible routes answer 500 for "no card" because the NHSO agent does, and that is
the contract; a crash (``internal_error``) or an undocumented 5xx is a failure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agent.card import layout as L
from agent.card.apdu import Conversation
from agent.card.decode import decode_date, decode_laser_id, decode_nhso, decode_text
from agent.card.demo import demo_profile
from agent.card.encode import encode_card
from agent.card.session import read_card
from agent.card.simulator import ATR_3B67, ATR_3B79, SimulatedCard
from agent.errors import ERROR_TABLE, AgentError
from testrig.robust_support import AgentProcess, demo_agent_running
from tests.card_strategies import card_profile

SPRING_CODE = re.compile(r"\[([a-z_]+)\]$")
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# -- the API against its own OpenAPI document -----------------------------------------------
@pytest.fixture(scope="module")
def running_agent() -> Iterator[AgentProcess]:
    with demo_agent_running("INFO") as agent:
        yield agent


def typed_server_error(response, case) -> None:
    """A 5xx must be a documented, typed agent error, never a crash."""
    if response.status_code < 500:
        return
    documented = case.operation.definition.raw.get("responses", {})
    assert str(response.status_code) in documented or "5XX" in documented or \
        "default" in documented, f"undocumented {response.status_code}: {response.text[:300]}"
    body = json.loads(response.text)
    code = body.get("code")
    if code is None:
        # The NHSO service routes answer in the old agent's Spring shape, with the code
        # at the end of the message: "... / <Thai> [keyring_unavailable]".
        found = SPRING_CODE.search(str(body.get("message", "")))
        code = found.group(1) if found else None
    assert code in ERROR_TABLE and code != "internal_error", \
        f"{response.status_code} without a typed code: {response.text[:300]}"


def test_api_answers_match_the_openapi_document(running_agent):
    """Every operation of ``/v1/openapi.json``, FUZZ_EXAMPLES generated requests each, valid
    ones and ones that break the document's rules (those must be refused as documented).

    (Driven operation by operation here rather than through schemathesis' pytest plugin,
    whose lazy loader does not run on pytest 9.)"""
    status, document = running_agent.get("/v1/openapi.json")
    assert status == 200
    schema = schemathesis.openapi.from_dict(json.loads(document))
    session = requests.Session()
    session.trust_env = False                      # loopback only: no proxy from the env
    failures: dict[str, str] = {}
    calls = {"n": 0}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20                   # the document really was read

    for operation in operations:
        @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=st.one_of(operation.as_strategy(GenerationMode.POSITIVE),
                              operation.as_strategy(GenerationMode.NEGATIVE)))
        def exercise(case) -> None:
            calls["n"] += 1
            response = case.call(base_url=running_agent.url, session=session, timeout=30)
            case.validate_response(response, checks=[status_code_conformance,
                                                     content_type_conformance,
                                                     response_headers_conformance,
                                                     response_schema_conformance])
            typed_server_error(response, case)

        try:
            exercise()
        except Exception as exc:  # noqa: BLE001 - every operation is tried; all reported
            failures[f"{operation.method.upper()} {operation.path}"] = str(exc)[:1500]
    session.close()
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
    assert calls["n"] >= len(operations)
    status, _ = running_agent.get("/v1/status")
    assert status == 200                            # still up after all of it


# -- decoders on anything at all ------------------------------------------------------------
@SETTINGS
@given(st.binary(max_size=20))
def test_date_and_plain_text_decoders_take_any_bytes(data):
    date = decode_date(data)
    date.to_json()                       # every view of a date works on garbage too
    assert isinstance(decode_text(data), str)


@SETTINGS
@given(st.binary(min_size=L.NHSO_BLOCK.length, max_size=L.NHSO_BLOCK.length))
def test_nhso_applet_decoder_takes_any_block_of_the_right_size(block):
    decode_nhso(block).to_json()


@SETTINGS
@given(st.binary(min_size=23, max_size=23))
def test_laser_id_decoder_takes_any_answer_of_the_right_size(answer):
    try:
        laser = decode_laser_id(answer)
    except AgentError:
        return
    assert isinstance(laser, str)


# -- the APDU machine against a real card that sometimes answers with a random status word --
def _flaky(card: SimulatedCard, faults: dict[int, int]):
    """``card.process``, except that the n-th answer gets status word ``faults[n]``."""
    count = {"n": 0}

    def transmit(apdu: bytes) -> bytes:
        count["n"] += 1
        response = card.process(apdu)
        sw = faults.get(count["n"])
        return response if sw is None else response[:-2] + sw.to_bytes(2, "big")
    return transmit


@SETTINGS
@given(card_profile(), st.sampled_from([ATR_3B67, ATR_3B79]), st.booleans(),
       st.dictionaries(st.integers(1, 60), st.integers(0, 0xFFFF), max_size=3))
def test_random_status_words_never_give_a_wrong_card(profile, atr, text_first, faults):
    """A read that meets a bad status word either fails with a typed error or returns
    exactly what the card holds: never a wrong or partial card."""
    card = SimulatedCard(encode_card(profile), atr=atr)
    handed: list = []
    try:
        result = read_card(_flaky(card, faults), atr,
                           on_text=handed.append if text_first else None)
    except AgentError as exc:
        assert exc.code in ERROR_TABLE
        for early in handed:             # text handed over before the failure is complete
            assert early.text == profile.text
        return
    assert result.text == profile.text
    assert result.photo == profile.photo or (result.photo is None
                                             and result.photo_error is not None)


# What a SELECT's status word means (ISO 7816-4; field notes: the MOI applet answers 61 0A):
# the applet is not on this card, or the card does not speak this dialect at all.
SELECT_NOT_THIS_CARD = {0x6A82: "file not found", 0x6A81: "function not supported",
                        0x6A86: "wrong P1-P2", 0x6D00: "INS not supported",
                        0x6E00: "CLA not supported", 0x6999: "applet select failed"}


@SETTINGS
@given(st.one_of(st.sampled_from([0x9000, 0x6100, 0x610A, 0x61FF, *SELECT_NOT_THIS_CARD,
                                  0x6283, 0x6700, 0x6982, 0x6F00]),
                 st.integers(0, 0xFFFF)))
def test_select_with_any_status_word_is_success_or_a_typed_error(sw):
    conv = Conversation(ATR_3B79)
    script = conv.select_script(L.MOI_AID)
    assert next(script) == bytes.fromhex("00A4040008A000000054480001")   # SELECT MOI applet
    answer = sw.to_bytes(2, "big")
    if sw == 0x9000 or sw >> 8 == 0x61:
        with pytest.raises(StopIteration):       # selected: the script is done
            script.send(answer)
    elif sw in SELECT_NOT_THIS_CARD:
        with pytest.raises(AgentError) as caught:
            script.send(answer)
        assert caught.value.code == "not_thai_id"
    else:
        with pytest.raises(AgentError) as caught:
            script.send(answer)
        assert caught.value.code == "apdu_failed" and caught.value.sw == sw
        assert f"{sw:04X}" in str(caught.value)


def test_the_demo_card_reads_cleanly_without_faults():
    """The fault test above is only meaningful if the unfaulted read is exact."""
    card = SimulatedCard(encode_card(demo_profile(3)))
    result = read_card(_flaky(card, {}), card.atr)
    assert result.text == demo_profile(3).text and result.photo == demo_profile(3).photo


# -- the other decoders: what NHSO answers, what pages and admins send -----------------------
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=24)
COVERAGE_KEYS = {"mainInscl", "subInscl", "hospMain", "hospSub", "hospMainOp", "paidModel",
                 "startDateTime", "expireDateTime", "claimTypes"}


@SETTINGS
@given(st.dictionaries(st.sampled_from(["funds", "pid", "statusMessage"]), json_value)
       | st.fixed_dictionaries({"funds": st.lists(st.dictionaries(st.sampled_from(
           ["mainInscl", "subInscl", "hospMain", "hospSub", "hospMainOp", "paidModel",
            "claimTypes", "startDateTime"]), json_value), max_size=2)}))
def test_nhso_coverage_answer_decoder_takes_any_json(answer):
    from agent.nhso.lookups import coverage_fields

    fields = coverage_fields(answer)
    assert set(fields) == COVERAGE_KEYS
    assert fields["mainInscl"] is None or isinstance(fields["mainInscl"], str)
    for key in ("hospMain", "hospSub", "hospMainOp"):
        assert fields[key] is None or set(fields[key]) == {"hcode", "hname"}


@SETTINGS
@given(json_value | st.dictionaries(st.sampled_from([
    "pid", "transactionId", "visitNumber", "mainInsclCode", "claimServiceCode",
    "serviceDateTime", "invoiceDateTime", "totalAmount", "paidAmount", "privilegeAmount",
    "hcode", "sourceId", "recorderPid", "claimType", "mobile", "correlationId", "hn"]),
    json_value))
def test_claim_and_confirm_save_validators_take_any_json(body):
    """(Found: a list as claimServiceCode or claimType raised TypeError, a 500.)"""
    from agent.nhso.settings import NhsoSettings
    from agent.nhso.validation import validate_claim, validate_confirm_save

    settings = NhsoSettings(hcode="10699", source_id="TCAGENT", recorder_pid="1101700000011")
    for validate in (validate_claim, validate_confirm_save):
        try:
            out = validate(body, settings)
        except AgentError as exc:
            assert exc.code in ERROR_TABLE
            continue
        assert isinstance(out, dict)


@SETTINGS
@given(st.dictionaries(st.sampled_from(["types", "readers", "photo", "other"]), json_value))
def test_websocket_filter_messages_take_any_json(message):
    from agent.api.ws import Filters, update_filters

    try:
        filters = update_filters(Filters(), message)
    except AgentError as exc:
        assert exc.code == "bad_request"
        return
    filters.to_json()
    filters.wants("card.read", "Reader 0")


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(json_value | st.dictionaries(st.sampled_from([
    "port", "allowedOrigins", "readPhoto", "readTimeout", "heartbeatInterval", "logLevel",
    "defaultTerminal", "backend"]), json_value))
def test_config_file_of_any_json_loads_or_says_why(tmp_path_factory, content):
    from agent.config import Config, load_config

    path = tmp_path_factory.mktemp("config") / "config.json"
    path.write_text(json.dumps(content))
    try:
        config = load_config(config_file=path, env={}, site_path=path.with_name("none.json"),
                             policy=lambda: ({}, "none"))
    except AgentError as exc:
        assert exc.code == "config_invalid", exc.code
        return
    assert isinstance(config, Config)
