"""Strict validation of the NHSO routes and settings: every bad field gets a 400 naming it."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiohttp import web

from agent.nhso.routes import setup_nhso
from agent.nhso.settings import NhsoSettings, SettingsError, load_settings, save_user_settings
from agent.nhso.token import TokenStore
from agent.nhso.validation import validate_claim
from testrig.nhso_support import (
    HCODE,
    RECORDER_PID,
    SOURCE_ID,
    TOKEN,
    MemoryKeyring,
    claim_body,
    free_port,
)

NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000

# field -> bad values (each sent alone in an otherwise good claim)
BAD_FIELDS: list[tuple[str, Any]] = [
    ("pid", "123"), ("pid", 3000000000013), ("pid", "3000000000014"), ("pid", "30000000000l3"),
    ("transactionId", ""), ("transactionId", "x" * 65), ("transactionId", "has space"),
    ("transactionId", 5),
    ("visitNumber", ""), ("visitNumber", "v" * 51),
    ("mainInsclCode", "ucs"), ("mainInsclCode", "U"), ("mainInsclCode", 1),
    ("claimServiceCode", "PG9999999"), ("claimServiceCode", "pg0060001"),
    ("serviceDateTime", 1_700_000_000), ("serviceDateTime", "2025-01-01T10:00:00"),
    ("serviceDateTime", 1.7e12), ("serviceDateTime", True),
    ("serviceDateTime", NOW_MS + 2 * DAY_MS), ("serviceDateTime", 900_000_000_000),
    ("invoiceDateTime", -1), ("invoiceDateTime", "1700000000000"),
    ("totalAmount", -1), ("totalAmount", "350"), ("totalAmount", 350.123),
    ("totalAmount", 1e9), ("totalAmount", None),
    ("paidAmount", 351.0), ("paidAmount", False),
    ("privilegeAmount", [350]), ("privilegeAmount", 0.001),
    ("hcode", "1234"), ("hcode", "99999"), ("hcode", 10699),
    ("sourceId", "bad id!"), ("sourceId", ""),
    ("recorderPid", "1111111111111"), ("recorderPid", 1101700000010),
    ("department", "OPD"), ("department", {"code": ""}), ("department", {"code": "1", "x": 1}),
    ("mobile", "call me"), ("tel", "0" * 30),
    ("reservedId", "bad id"),
    ("latitude", 91), ("longitude", "100.5"), ("latitude", True),
    ("extraField", 1),
]


@pytest.fixture
async def agent(aiohttp_client, tmp_path):
    settings = load_settings(config_dir=tmp_path / "c", data_dir=tmp_path / "d", env={},
                             site_path=tmp_path / "none.json",
                             # Nothing listens there: these tests never reach NHSO.
                             base_url=f"http://127.0.0.1:{free_port()}", hcode=HCODE,
                             source_id=SOURCE_ID, recorder_pid=RECORDER_PID)
    keyring = MemoryKeyring()
    keyring.set_password("thaicard-agent", "nhso-token", TOKEN)
    app = web.Application()
    setup_nhso(app, settings, token_store=TokenStore(keyring))
    return await aiohttp_client(app)


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS,
                         ids=[f"{f}={v!r}"[:40] for f, v in BAD_FIELDS])
async def test_each_bad_claim_field_is_named(agent, field, value):
    body = claim_body(1)
    body[field] = value
    resp = await agent.post("/v1/claims", json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert answer["code"] == "bad_request" and answer["message"] and answer["message_th"]
    assert [e["field"] for e in answer["errors"]] == [field]
    assert answer["errors"][0]["message"] and answer["errors"][0]["message_th"]


@pytest.mark.parametrize("field", ["pid", "transactionId", "visitNumber", "mainInsclCode",
                                   "claimServiceCode", "serviceDateTime", "invoiceDateTime",
                                   "totalAmount", "paidAmount", "privilegeAmount"])
async def test_each_missing_field_is_named(agent, field):
    body = claim_body(1)
    del body[field]
    resp = await agent.post("/v1/claims", json=body)
    assert resp.status == 400
    errors = (await resp.json())["errors"]
    assert errors == [{"field": field, "message": "is required", "message_th": "ต้องระบุ"}]


async def test_all_errors_of_a_request_come_at_once(agent):
    resp = await agent.post("/v1/claims", json=claim_body(1, pid="1", totalAmount=-5,
                                                          claimServiceCode="X"))
    fields = {e["field"] for e in (await resp.json())["errors"]}
    assert fields == {"pid", "totalAmount", "claimServiceCode"}


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'"text"', b"null",
                                 b'{"totalAmount": NaN}'])
async def test_body_that_is_not_a_claim_object(agent, raw):
    resp = await agent.post("/v1/claims", data=raw,
                            headers={"Content-Type": "application/json"})
    assert resp.status == 400
    errors = (await resp.json())["errors"]
    assert errors and all(e["message"] for e in errors)
    if raw.startswith(b"{\"totalAmount"):
        assert "totalAmount" in {e["field"] for e in errors}


async def test_a_good_claim_is_accepted(agent):
    resp = await agent.post("/v1/claims", json=claim_body(1, department={"code": "01",
                                                                         "name": "OPD"},
                                                          mobile="0812345678",
                                                          latitude=13.7, longitude=100.5))
    assert resp.status == 202
    assert (await resp.json())["status"] == "queued"


@pytest.mark.parametrize(("query", "field"), [
    ("status=bogus", "status"), ("status=sent,nope", "status"), ("date=2025-02-30", "date"),
    ("date=20250101", "date"), ("limit=0", "limit"), ("limit=x", "limit"),
    ("foo=1", "foo")])
async def test_claim_list_parameters(agent, query, field):
    resp = await agent.get(f"/v1/claims?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_claim_list_and_unknown_claim(agent):
    resp = await agent.get("/v1/claims?status=queued,sent&date=2025-01-01&limit=5")
    assert resp.status == 200 and (await resp.json()) == {"claims": [], "count": 0}
    resp = await agent.get("/v1/claims/no-such-claim")
    assert resp.status == 404 and (await resp.json())["code"] == "claim_not_found"


@pytest.mark.parametrize(("query", "field"), [
    ("", "pid"), ("pid=123", "pid"), ("pid=3000000000014", "pid"),
    ("pid=3000000000013&date=yesterday", "date"),
    ("pid=3000000000013&serviceCode=PG1", "serviceCode")])
async def test_authen_status_parameters(agent, query, field):
    resp = await agent.get(f"/v1/nhso/authen-status?{query}")
    assert resp.status == 400
    assert [e["field"] for e in (await resp.json())["errors"]] == [field]


async def test_nhso_unreachable_is_a_typed_error(agent):
    resp = await agent.get("/v1/nhso/authen-status?pid=3000000000013")
    assert resp.status == 503
    assert (await resp.json())["code"] == "nhso_unavailable"


@pytest.mark.parametrize(("change", "field"), [
    ({"pid": "1"}, "pid"), ({"claimType": "PG1"}, "claimType"), ({"mobile": "12"}, "mobile"),
    ({"correlationId": ""}, "correlationId"), ({"hn": "h n"}, "hn"),
    ({"hcode": "1234"}, "hcode")])
async def test_confirm_save_validation_is_spring_shaped(agent, change, field):
    body = {"pid": "3000000000013", "claimType": "PG0060001", "mobile": "0812345678",
            "correlationId": "c0ffee-1", **change}
    resp = await agent.post("/api/nhso-service/confirm-save", json=body)
    assert resp.status == 400
    answer = await resp.json()
    assert {"timestamp", "status", "error", "message", "path"} <= set(answer)
    assert answer["status"] == 400 and answer["path"] == "/api/nhso-service/confirm-save"
    assert [e["field"] for e in answer["errors"]] == [field]
    assert answer["errors"][0]["defaultMessage"]


def test_validated_claim_is_what_nhso_gets():
    settings = NhsoSettings(hcode=HCODE, source_id=SOURCE_ID, recorder_pid=RECORDER_PID)
    body = claim_body(7, totalAmount=100, paidAmount=20.5, privilegeAmount=79.5)
    out = validate_claim(body, settings)
    assert out == {**body, "hcode": HCODE, "sourceId": SOURCE_ID, "recorderPid": RECORDER_PID,
                   "totalAmount": 100, "paidAmount": 20.5, "privilegeAmount": 79.5}


# -- settings ------------------------------------------------------------------------------

def test_settings_layers_and_env(tmp_path):
    site = tmp_path / "site.json"
    site.write_text('{"hcode": "11111", "zone": "test", "retentionDays": 30}')
    user = tmp_path / "user"
    user.mkdir()
    (user / "nhso.json").write_text('{"hcode": "22222"}')
    s = load_settings(config_dir=user, data_dir=tmp_path / "d", site_path=site,
                      env={"THAICARD_NHSO_RETENTION_DAYS": "7",
                           "THAICARD_NHSO_AUTHEN_CODE_API": "off"})
    assert (s.hcode, s.zone, s.retention_days, s.authen_code_api) == ("22222", "test", 7, False)
    assert s.urls.claim_url == "https://test.nhso.go.th/nhsoendpoint/api/nhso-claim-detail"
    s = load_settings(config_dir=user, data_dir=tmp_path / "d", site_path=site,
                      env={"THAICARD_NHSO_BASE_URL": "http://127.0.0.1:9/"})
    assert s.urls.authen_status_url == \
        "http://127.0.0.1:9/authencodestatus/api/check-authen-status"
    assert s.outbox_path == tmp_path / "d" / "nhso-outbox.sqlite3"


@pytest.mark.parametrize("layer", [
    '{"hcode": "1234"}', '{"zone": "staging"}', '{"recorderPid": "1111111111111"}',
    '{"retentionDays": 0}', '{"dueTime": "25:00"}', '{"unknownKey": 1}', '[1]', '{bad',
    '{"baseUrl": "ftp://x"}', '{"senderConcurrency": "many"}'])
def test_bad_settings_are_refused(tmp_path, layer):
    (tmp_path / "nhso.json").write_text(layer)
    with pytest.raises(SettingsError):
        load_settings(config_dir=tmp_path, data_dir=tmp_path, site_path=tmp_path / "x", env={})


def test_save_user_settings_validates_before_writing(tmp_path):
    s = load_settings(config_dir=tmp_path, data_dir=tmp_path, site_path=tmp_path / "x", env={})
    with pytest.raises(SettingsError):
        save_user_settings(s, {"hcode": "abc"})
    assert not (tmp_path / "nhso.json").exists()
    s = save_user_settings(s, {"hcode": "10699", "zone": "test"})
    assert (s.hcode, s.zone) == ("10699", "test")
    s = save_user_settings(s, {"zone": None})
    assert s.zone == "production" and '"zone"' not in (tmp_path / "nhso.json").read_text()
