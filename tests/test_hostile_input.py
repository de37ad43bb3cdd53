"""Bad input, class by class: every hostile value a clean 4xx (or a WebSocket ``error``) with
a stable code; never a 500, a hang, a dropped WebSocket or a traceback in the log.

Against the real agent (``start_server``: the guard, the NHSO room, the demo card) over raw
sockets, so bodies and paths carry bytes no client library would send.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
import websockets.sync.client
from aiohttp.test_utils import make_mocked_request
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agent.api.query import is_ascii_digits
from agent.api.responses import dumps, error_response
from agent.api.strict_json import MAX_DEPTH, loads
from agent.errors import AgentError
from agent.nhso import validation as V
from tests.hostile_support import HIS, LiveAgent, live_agent

# Every route with the parameters it reads; {p} is a path parameter.
ROUTES: list[tuple[str, str, tuple[str, ...]]] = [
    ("GET", "/api/smartcard/terminals", ()),
    ("GET", "/api/smartcard/read", ("readImageFlag", "terminal")),
    ("GET", "/api/smartcard/read-card-only", ("readImageFlag", "terminal")),
    ("GET", "/api/preference", ()),
    ("GET", "/api/api/preference", ()),
    ("GET", "/v1/status", ()),
    ("GET", "/v1/readers", ()),
    ("GET", "/v1/card", ("photo",)),
    ("GET", "/v1/readers/{p}/card", ("photo",)),
    ("GET", "/v1/readers/{p}/photo", ()),
    ("POST", "/v1/demo/card", ()),
    ("DELETE", "/v1/demo/card", ("reader",)),
    ("GET", "/v1/claims", ("date", "status", "limit")),
    ("POST", "/v1/claims", ()),
    ("POST", "/v1/claims/retry", ()),
    ("GET", "/v1/claims/{p}", ()),
    ("POST", "/v1/claims/{p}/review", ()),
    ("GET", "/v1/visits", ("pid", "date", "status", "limit")),
    ("POST", "/v1/visits", ()),
    ("GET", "/v1/visits/{p}", ()),
    ("DELETE", "/v1/visits/{p}", ()),
    ("POST", "/v1/visits/{p}/confirm", ("wait",)),
    ("GET", "/v1/nhso/authen-status", ("pid", "date", "serviceCode")),
    ("GET", "/v1/nhso/status", ()),
    ("GET", "/api/nhso-service/latest-authen-code/{p}", ()),
    ("GET", "/api/nhso-service/latest-5-authen-code-all-hospital/{p}", ()),
    ("POST", "/api/nhso-service/confirm-save", ()),
    ("POST", "/api/nhso-service/save-as-draft", ()),
    ("GET", "/api/smartcard/probe/{p}", ()),
    ("POST", "/v1/allowed-origins", ()),
    ("GET", "/metrics", ()),
    ("GET", "/doctor", ()),
    ("GET", "/v1/doctor", ()),
    ("GET", "/v1/openapi.json", ()),
    ("GET", "/v1/client.js", ()),
    ("GET", "/v1/events", ("types", "readers", "photo")),
    ("GET", "/", ()),
    ("GET", "/kiosk", ()),
    ("GET", "/static/{p}", ()),
]
# 5xx that are not our failure: NHSO behind the agent (never reachable in these tests), and
# the card's state (the demo routes remove and insert it) as the NHSO agent's 500 says it.
UPSTREAM = ("nhso_token_missing", "nhso_unavailable", "nhso_not_configured", "no_card",
            "card_removed", "read_timeout")

# Text with everything in it: controls, lone surrogates, non-ASCII digits, long runs.
any_char = st.characters(codec=None, exclude_categories=())
hostile_text = st.one_of(
    st.text(any_char, max_size=30),
    st.sampled_from(["²", "๓", "١٢", "1\n", "HN1\n", "0812345678\n", "\x00", "9" * 400, "-1",
                     "1e999", " 1 ", "true\n", "%", "../../etc/passwd", "\ud800", "yes\r\n",
                     "1234567890123\n", "2025-01-01\n", "PG0060001\n"]),
)


def encoded(text: str) -> str:
    """``text`` percent-encoded byte by byte (lone surrogates as their raw UTF-8 bytes)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(any_char, max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(any_char, max_size=8), inner, max_size=3), max_leaves=8)
CLAIM_KEYS = ["pid", "transactionId", "visitNumber", "hn", "mobile", "totalAmount",
              "serviceDateTime", "claimServiceCode", "claimType", "correlationId", "hcode",
              "status", "reader", "variant", "mainInsclCode"]
hostile_body = st.one_of(
    st.integers(MAX_DEPTH, 20_000).map(lambda n: ("[" * n + "]" * n).encode()),
    st.integers(MAX_DEPTH, 20_000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
    st.sampled_from([b'"\\ud800"', b'{"pid": "\\udfff"}', b'{"\\ud800": 1}',
                     b'{"totalAmount": 1e999}', b'{"pid": ' + b"9" * 5000 + b"}",
                     b"\xc0\xaf", b"\xed\xa0\x80", b'{"a": "\xff"}', b"", b"{", b"[]",
                     b'{"pid": 1234567890123}', b'{"hn": ["x"]}', b'{"status": "queued\\n"}',
                     b'{"reader": 5, "variant": "1"}', b'{"variant": 1e300}']),
    st.binary(max_size=40),
    st.dictionaries(st.sampled_from(CLAIM_KEYS), json_value | hostile_text, max_size=6).map(
        lambda d: json.dumps(d).encode()),
)


@pytest.fixture(scope="module")
def agent(tmp_path_factory) -> Iterator[LiveAgent]:
    with live_agent(tmp_path_factory.mktemp("hostile-input")) as running:
        yield running


def assert_clean(agent: LiveAgent, answer: Any, what: str) -> None:
    assert agent.thread.is_alive(), what           # the agent's loop is still running
    assert answer.status < 600, what
    if answer.status >= 400:
        body = answer.json()                     # always JSON
        text = json.dumps(body)
        if answer.status >= 500:
            assert any(code in text for code in UPSTREAM), (what, answer.status, body)
        else:
            assert body.get("code") or body.get("errors"), (what, body)
        assert "internal_error" not in text, (what, body)
    assert not agent.log.tracebacks(), (what, agent.log.tracebacks())


PER_ROUTE = settings(max_examples=15, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))
QUERY_NAMES = ["readImageFlag", "photo", "terminal", "limit", "date", "status", "pid",
               "serviceCode", "reader", "types", "readers"]


def drive(agent: LiveAgent, route: tuple[str, str, tuple[str, ...]], param: str,
          query: list[tuple[str, str]], body: bytes) -> None:
    method, template, _names = route
    target = template.replace("{p}", encoded(param))
    if query:
        target += "?" + "&".join(f"{encoded(k)}={encoded(v)}" for k, v in query)
    headers = {"Content-Type": "application/json"} if method == "POST" else {}
    answer = agent.request(method, target, headers=headers,
                           body=body if method == "POST" else b"")
    assert_clean(agent, answer, f"{method} {target[:120]} {body[:60]!r}")


@pytest.mark.parametrize("route", ROUTES, ids=[f"{m} {t}" for m, t, _ in ROUTES])
@PER_ROUTE
@given(param=hostile_text, body=hostile_body, data=st.data())
def test_every_route_answers_hostile_input_cleanly(agent, route, param, body, data):
    """Each route, with its own parameters and others, given hostile values."""
    names = st.sampled_from(list(route[2]) or QUERY_NAMES) | st.sampled_from(QUERY_NAMES)
    query = data.draw(st.lists(st.tuples(names, hostile_text), max_size=3))
    drive(agent, route, param, query, body)


@pytest.mark.parametrize(("route", "query", "body"), [
    (("GET", "/v1/claims", ()), [("limit", "²")], b""),
    (("GET", "/v1/claims", ()), [("limit", "๓")], b""),
    (("POST", "/v1/demo/card", ()), [], b"[" * 5000),
    (("POST", "/v1/claims", ()), [], b'{"pid": "\\ud800"}'),
    (("POST", "/api/nhso-service/confirm-save", ()), [], b'{"a":' * 3000 + b"1" + b"}" * 3000),
    (("GET", "/v1/card", ()), [("photo", "\ud800")], b""),
    (("GET", "/v1/events", ()), [("types", "card.read\n")], b""),
])
def test_known_hostile_requests(agent, route, query, body):
    drive(agent, route, "x", query, body)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(path=st.binary(min_size=1, max_size=30))
def test_raw_path_bytes_never_break_the_agent(agent, path):
    """Paths with bytes that are not UTF-8, controls and NUL (HTTP allows no raw space)."""
    raw = path.replace(b" ", b"%20").replace(b"\r", b"%0D").replace(b"\n", b"%0A")
    try:
        answer = agent.raw(b"GET /v1/" + raw + b" HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           b"Connection: close\r\n\r\n" % agent.port)
    except ConnectionError:
        answer = None                             # aiohttp's parser may refuse the line
    if answer is not None:
        assert answer.status < 500
    assert not agent.log.tracebacks()
    assert agent.alive()


# -- the WebSocket -----------------------------------------------------------------------------
def message_of(kind: str) -> st.SearchStrategy[str]:
    """Messages of one type with hostile fields (or, for "raw", anything at all)."""
    if kind == "raw":
        return st.one_of(
            st.dictionaries(st.text(any_char, max_size=6), json_value, max_size=3).map(
                json.dumps),
            json_value.map(json.dumps),
            st.integers(MAX_DEPTH, 20_000).map(lambda n: "[" * n + "]" * n),
            st.sampled_from(['{"type": "\\ud800"}', "", "{", "\x00", '{"type": 1}',
                             '{"type": "ping", "id": ' + "9" * 5000 + "}"]))
    fields = {"types": json_value | hostile_text, "readers": json_value | hostile_text,
              "photo": json_value | hostile_text, "id": json_value}
    plain = st.fixed_dictionaries({"type": st.just(kind)}, optional=fields).map(json.dumps)
    deep = st.integers(MAX_DEPTH, 20_000).map(
        lambda n: json.dumps({"type": kind}).rstrip("}") + ', "x": ' + "[" * n + "]" * n + "}")
    return plain | deep


WS_KINDS = ["subscribe", "snapshot", "ping", "bogus", "raw"]
ANSWERS = ("error", "subscribed", "snapshot", "pong")


def next_answer(ws: Any) -> dict[str, Any]:
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] in ANSWERS:
            return message


@pytest.fixture(scope="module")
def ws(agent) -> Iterator[Any]:
    with websockets.sync.client.connect(f"ws://127.0.0.1:{agent.port}/v1/events?photo=0",
                                        max_size=None) as conn:
        assert next_answer(conn)["type"] == "snapshot"
        yield conn


@pytest.mark.parametrize("kind", WS_KINDS)
@settings(max_examples=20, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_websocket_message_gets_an_answer_and_the_socket_stays(agent, ws, kind, data):
    ws_exchange(agent, ws, data.draw(message_of(kind)))


@pytest.mark.parametrize("text", [
    "[" * 5000, '{"type":"subscribe","readers":' + "[" * 3000 + "]" * 3000 + "}",
    '{"type": "subscribe", "types": ["\\udc00"]}', '{"type": "subscribe", "photo": "yes\\n"}',
])
def test_known_hostile_websocket_messages(agent, ws, text):
    ws_exchange(agent, ws, text)


def ws_exchange(agent: LiveAgent, ws: Any, text: str) -> None:
    ws.send(text)
    answer = next_answer(ws)
    if answer["type"] == "error":
        assert answer["code"] in ("bad_request", "invalid_json", "scope_denied"), answer
    ws.send('{"type":"ping","id":"still-there"}')
    pong = next_answer(ws)
    assert pong["type"] == "pong" and pong["id"] == "still-there"
    assert not agent.log.tracebacks()


# -- the pieces, one by one ---------------------------------------------------------------------
@pytest.mark.parametrize("text", ["²", "๓", "١", "12\n", " 1", "+1", "-1", "1.0", "", "0x1"])
def test_only_ascii_digits_are_numbers(agent, text):
    assert not is_ascii_digits(text)
    answer = agent.get(f"/v1/claims?limit={encoded(text)}") if text else None
    if answer is not None:
        assert answer.status == 400 and answer.json()["errors"][0]["field"] == "limit"


def test_ascii_numbers_still_parse(agent):
    assert is_ascii_digits("42")
    assert agent.get("/v1/claims?limit=42").status == 200


IDENTIFIERS = [("transactionId", V.TRANSACTION_ID_RE), ("visitNumber", V.VISIT_RE),
               ("hn", V.HN_RE), ("mobile", V.MOBILE_RE), ("correlationId", V.CORRELATION_RE),
               ("phone", V.PHONE_RE), ("inscl", V.INSCL_RE)]
GOOD = {"transactionId": "12345-VN1", "visitNumber": "VN1", "hn": "HN1", "mobile": "0812345678",
        "correlationId": "abc-1", "phone": "02 123 4567", "inscl": "UCS"}


@pytest.mark.parametrize(("name", "pattern"), IDENTIFIERS)
@given(tail=st.sampled_from(["\n", "\r\n", "\x00", " DROP", "\u2028", "\n\n"]))
def test_identifiers_are_matched_whole(name, pattern, tail):
    checker = V.Checker({name: GOOD[name] + tail})
    assert checker.string(name, pattern, "x", "x") is None
    assert checker.errors and checker.errors[0]["field"] == name
    assert V.Checker({name: GOOD[name]}).string(name, pattern, "x", "x") == GOOD[name]


def test_dates_are_matched_whole():
    with pytest.raises(V.ValidationFailed):
        V.parse_date("2025-01-01\n")


@given(detail=st.text(any_char, max_size=40), path=st.text(any_char, max_size=40))
@example(detail="\ud800", path="/v1/\udcff")
def test_an_error_body_is_always_built(detail, path):
    request = make_mocked_request("GET", "/v1/x")
    response = error_response(AgentError(detail, code="bad_request"), request)
    assert response.status == 400 and response.body is not None
    body = json.loads(bytes(response.body))  # bytes in practice
    assert body["code"] == "bad_request"
    assert dumps({"path": path}).encode("utf-8")


@given(depth=st.integers(MAX_DEPTH + 1, 50_000))
def test_the_strict_reader_refuses_deep_nesting_by_code(depth):
    with pytest.raises(AgentError) as info:
        loads("[" * depth + "]" * depth)
    assert info.value.code == "invalid_json"


def test_the_strict_reader_keeps_what_callers_send():
    assert loads('{"hn": "", "mobile": "081-234-5678", "a": [1, 2.5, null, true]}') == {
        "hn": "", "mobile": "081-234-5678", "a": [1, 2.5, None, True]}
    assert loads("ไทย".join(['"', '"'])) == "ไทย"


def test_no_route_of_the_agent_is_left_out(agent):
    """The property tests above drive every route the agent has."""
    app = agent.server.app
    registered = {(r.method, r.resource.canonical) for r in app.router.routes()
                  if r.resource is not None and r.method != "HEAD"}
    assert registered == {(m, t.replace("{p}", "{" + _param(t) + "}")) for m, t, _ in ROUTES}


def _param(template: str) -> str:
    return {"/v1/readers/{p}/card": "name", "/v1/readers/{p}/photo": "name",
            "/static/{p}": "file", "/v1/claims/{p}": "id", "/v1/claims/{p}/review": "id",
            "/v1/visits/{p}": "id",
            "/v1/visits/{p}/confirm": "id"}.get(template, "pid")


def test_allowed_page_still_served(agent):
    agent.request("POST", "/v1/demo/card", headers={"Content-Type": "application/json"},
                  body=b"{}")                   # the fuzzing above may have removed it
    deadline = time.monotonic() + 10            # the insertion is seen asynchronously
    while agent.get("/v1/card").status != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent.get("/api/smartcard/read", headers={"Origin": HIS}).status == 200
