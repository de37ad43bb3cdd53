"""A local NHSO contract server: the documented NHSO web services, for tests and for trying
the agent without a hospital token.

    python -m testrig.nhso_server --port 8190 --token secret-token --hcode 10699

prints ``READY <port>`` when it listens. Point the agent at it with
``THAICARD_NHSO_BASE_URL=http://127.0.0.1:8190`` (or ``thaicard-agent nhso config
--base-url ...``). It implements the NHSO calls docs/nhso.md describes: bearer-token check
(a token works only for its hcode), field validation with NHSO-style error bodies, ``EP``
codes for closed claims, ``PP`` codes from AuthenCode, Check Authen Status built from what
it received, and right-search. It never deduplicates claims: it counts every accepted claim
per ``transactionId`` so tests can prove the agent sent each one exactly once.

Control API (tests only), JSON:
    POST /_control/faults   {"seed": 1, "rules": [{"endpoint": "claim"|"status"|"rights"|
                            "authen", "modes": [...], "rate": 0.3 | "count": 2,
                            "delay": 2.0, "status": 503, "key": "<transactionId>"}]}
        modes: error (answer ``status`` without processing), drop (close the connection
        without processing), drop_after (process, then close without answering), slow
        (process, then answer after ``delay`` s: beyond the client's timeout the answer is
        lost), late (wait ``delay`` s, then process and answer: NHSO taking its time
        before it records anything), html (a proxy's HTML error page with ``status``,
        without processing), empty (200 with an empty body, without processing: what NHSO
        answers for an expired token). ``delay`` is seconds or [min, max] for a random one.
    POST /_control/reject   {"transactionIds": [...]}  -> 400 with a dataError (never
                            subject to faults: the refusal always reaches the agent)
    POST /_control/tokens   {"<token>": "<hcode>" or null to revoke, ...}
    POST /_control/people   {"<pid>": {"funds": [...], "firstName": ..., ...}}
    POST /_control/history  {"<pid>": [service history entries of earlier days]}
    POST /_control/workstation {"pid", "serviceDateTime" (epoch ms), "claimServiceCode"?,
                            "hcode"?}  -> {"authenCode"}: a claim closed by another
                            workstation or NHSO's web page (listed by Check Authen Status,
                            not counted as ours)
    POST /_control/quirks   {"statusFormat": 1|2, "bom": true|false}: Check Authen Status in
                            the second format seen in the field; a UTF-8 BOM before JSON
    POST /_control/latency  {"seconds": 0.05}   added to every answer
    POST /_control/clock    {"offset": 3600}   every answer's Date header is that many
                            seconds ahead (negative: behind), for the doctor's clock check
    POST /_control/reset
    GET  /_control/state    counters, issued codes, faults applied, requests in flight
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import email.utils
import json
import math
import random
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

BANGKOK = dt.timezone(dt.timedelta(hours=7))
SERVICE_NAMES = {
    "PG0060001": "เข้ารับบริการรักษาทั่วไป (OPD/ IPD/ PP)",
    "PG0080001": "การดูแลรักษาในชุมชน (Community Isolation)",
    "PG0090001": "การดูแลรักษาในที่พัก (Home Isolation)",
    "PG0110001": "Self Isolation",
    "PG0120001": "UCEP PLUS (ผู้ป่วยกลุ่มอาการสีเหลืองและสีแดง)",
    "PG0130001": "บริการฟอกเลือดด้วยเครื่องไตเทียม (HD)",
    "PG0140001": "Homeward",
    "PG0180001": "บริการตรวจสุขภาพที่จำเป็นตามกลุ่มวัย (เฉพาะเขต กทม)",
}
AUTHEN_PER_DAY = 2
AUTHEN_LIMIT_MESSAGE = "ขอ Authen Code ได้ไม่เกิน 2 ครั้งต่อคนต่อวัน"
MODES = ("error", "drop", "drop_after", "slow", "late", "html", "empty")
PROXY_PAGE = ("<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>"
              "<h1>Bad Gateway</h1><p>The proxy server received an invalid response."
              "</p></body></html>")
ENDPOINTS = ("claim", "status", "rights", "authen")


def pid_ok(pid: Any) -> bool:
    if not (isinstance(pid, str) and len(pid) == 13 and pid.isascii() and pid.isdigit()):
        return False
    total = sum(int(d) * (13 - i) for i, d in enumerate(pid[:12]))
    return (11 - total % 11) % 10 == int(pid[12])


@dataclass
class Rule:
    endpoint: str
    modes: list[str]
    rate: float = 0.0
    count: int | None = None
    delay: float | tuple[float, float] = 2.0
    status: int = 503
    key: str | None = None       # only requests for this transactionId / personalId

    def pick_delay(self, rng: random.Random) -> float:
        if isinstance(self.delay, tuple):
            return rng.uniform(*self.delay)
        return self.delay


@dataclass
class State:
    tokens: dict[str, str] = field(default_factory=dict)
    rules: list[Rule] = field(default_factory=list)
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    latency: float = 0.0
    reject: set[str] = field(default_factory=set)
    people: dict[str, dict[str, Any]] = field(default_factory=dict)
    claim_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected_counts: collections.Counter[str] = field(default_factory=collections.Counter)
    issued: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)   # pid -> entries
    requests: collections.Counter[str] = field(default_factory=collections.Counter)
    faults: collections.Counter[str] = field(default_factory=collections.Counter)
    log: list[list[Any]] = field(default_factory=list)   # [time, endpoint, mode, key]
    authen_counts: collections.Counter[tuple[str, str]] = field(
        default_factory=collections.Counter)
    tasks: set[asyncio.Future[Any]] = field(default_factory=set)
    inflight: int = 0
    seq: int = 0
    clock_offset: float = 0.0
    status_format: int = 1
    bom: bool = False
    foreign: list[dict[str, Any]] = field(default_factory=list)   # other workstations' claims

    def reset(self) -> None:
        tokens = self.tokens
        self.__init__()
        self.tokens = tokens

    def next_code(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.rng.randrange(10**9, 10**10)}"

    def pick_fault(self, endpoint: str, key: str) -> tuple[str, Rule] | None:
        for rule in self.rules:
            if rule.endpoint != endpoint or (rule.key is not None and rule.key != key):
                continue
            if rule.count is not None:
                if rule.count > 0:
                    rule.count -= 1
                    return self.rng.choice(rule.modes), rule
                continue
            if self.rng.random() < rule.rate:
                return self.rng.choice(rule.modes), rule
        return None


STATE = web.AppKey("state", State)


def nhso_error(status: int, **body: Any) -> web.Response:
    return web.json_response(body, status=status)


def _authorized(request: web.Request) -> str | None:
    """The hcode of the bearer token, or None."""
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return request.app[STATE].tokens.get(header[7:].strip())


async def _with_faults(request: web.Request, endpoint: str, process: Any, *, key: str = "",
                       no_faults: bool = False) -> web.StreamResponse:
    """Run ``process`` (which records and builds the answer) under the fault rules.

    What NHSO does with a request does not depend on the client still waiting: the work
    is shielded from the handler's cancellation when the client goes away.
    """
    state = request.app[STATE]
    state.requests[endpoint] += 1
    if state.latency:
        await asyncio.sleep(state.latency)
    hcode = _authorized(request)
    if hcode is None:
        return nhso_error(401, error="Unauthorized", message="Invalid token.")
    picked = None if no_faults else state.pick_fault(endpoint, key)
    mode, rule = picked if picked else ("", None)
    if mode:
        state.faults[mode] += 1
    state.log.append([round(time.time(), 3), endpoint, mode or "ok", key])
    if mode == "error":
        return nhso_error(rule.status, error="Server Error",
                          message="Service temporarily unavailable")
    if mode == "drop":
        request.transport.close()
        return web.Response(status=204)
    if mode == "html":
        return web.Response(status=rule.status, text=PROXY_PAGE, content_type="text/html")
    if mode == "empty":
        return web.Response(status=200, body=b"", content_type="application/json")
    delay = rule.pick_delay(state.rng) if rule else 0.0

    async def work() -> web.Response:
        if mode == "late":
            await asyncio.sleep(delay)
        state.inflight += 1
        try:
            response = await process(hcode)
            if mode == "drop_after":
                request.transport.close()
            elif mode == "slow":
                await asyncio.sleep(delay)
        finally:
            state.inflight -= 1
        return response

    task = asyncio.ensure_future(work())
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)
    return await asyncio.shield(task)


def _epoch_ms_ok(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and 946_684_800_000 <= value <= 4_102_444_800_000)


def _amount_ok(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0
            and abs(value * 100 - round(value * 100)) < 1e-6)


def validate_claim(body: Any, token_hcode: str) -> list[dict[str, str]]:
    if not isinstance(body, dict):
        return [{"field": "", "message": "JSON object expected"}]
    errors = []

    def bad(name: str, message: str) -> None:
        errors.append({"field": name, "message": message})

    for name in ("hcode", "mainInsclCode", "serviceDateTime", "invoiceDateTime",
                 "transactionId", "totalAmount", "paidAmount", "privilegeAmount",
                 "claimServiceCode", "pid", "sourceId", "recorderPid", "visitNumber"):
        if body.get(name) in (None, ""):
            bad(name, "must not be empty")
    if errors:
        return errors
    if not re.fullmatch(r"[0-9]{5}", str(body["hcode"])):
        bad("hcode", "invalid hcode")
    elif body["hcode"] != token_hcode:
        bad("hcode", "hcode does not match the token")
    for name in ("pid", "recorderPid"):
        if not pid_ok(body[name]):
            bad(name, "invalid personal id")
    for name in ("serviceDateTime", "invoiceDateTime"):
        if not _epoch_ms_ok(body[name]):
            bad(name, "must be epoch milliseconds")
    for name in ("totalAmount", "paidAmount", "privilegeAmount"):
        if not _amount_ok(body[name]):
            bad(name, "invalid amount")
    if body["claimServiceCode"] not in SERVICE_NAMES:
        bad("claimServiceCode", "unknown service code")
    return errors


def _history_entry(code: str, when_ms: int, service_code: str, hcode: str,
                   channel: str) -> dict[str, Any]:
    when = dt.datetime.fromtimestamp(when_ms / 1000, BANGKOK).replace(tzinfo=None)
    return {"claimCode": code, "serviceDateTime": when.isoformat(timespec="seconds"),
            "service": {"code": service_code, "name": SERVICE_NAMES.get(service_code, "")},
            "hospital": {"hcode": hcode, "hname": f"หน่วยบริการทดสอบ {hcode}"},
            "sourceChannel": channel}


async def claim_detail(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        body = None
    key = str(body.get("transactionId", "")) if isinstance(body, dict) else ""

    async def process(hcode: str) -> web.Response:
        errors = validate_claim(body, hcode)
        if errors:
            return nhso_error(400, message="Bad Request", errors=errors)
        if body["transactionId"] in state.reject:
            state.rejected_counts[body["transactionId"]] += 1
            return nhso_error(400, dataError=f"transactionId {body['transactionId']}: "
                                             "ข้อมูลไม่ผ่านการตรวจสอบ (rejected by test rule)")
        code = state.next_code("EP")
        state.claim_counts[body["transactionId"]] += 1
        state.issued.append({"transactionId": body["transactionId"], "authenCode": code,
                             "seq": state.seq})
        # docs/reference.md (Check Authen Status): EP codes are endpoint confirmations, listed with
        # sourceChannel ENDPOINT.
        state.history.setdefault(body["pid"], []).append(_history_entry(
            code, body["serviceDateTime"], body["claimServiceCode"], body["hcode"],
            "ENDPOINT"))
        return web.json_response({"seq": state.seq, "authenCode": code})

    # A refusal always reaches the agent, so a test can tell that it is never retried.
    return await _with_faults(request, "claim", process, key=key,
                              no_faults=key in state.reject)


async def authen_code(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        body = await request.json()
    except ValueError:
        body = None

    async def process(hcode: str) -> web.Response:
        if not isinstance(body, dict):
            return nhso_error(400, message="JSON object expected")
        errors = []
        if not pid_ok(body.get("pid")):
            errors.append({"field": "pid", "message": "invalid personal id"})
        if body.get("hcode") != hcode:
            errors.append({"field": "hcode", "message": "hcode does not match the token"})
        if body.get("serviceCode") not in SERVICE_NAMES:
            errors.append({"field": "serviceCode", "message": "unknown service code"})
        if not body.get("sourceId"):
            errors.append({"field": "sourceId", "message": "must not be empty"})
        if errors:
            return nhso_error(400, message="Bad Request", errors=errors)
        # In the field, NHSO refuses a third authen request for a person on one day.
        today = dt.datetime.now(BANGKOK).date().isoformat()
        state.authen_counts[(body["pid"], today)] += 1
        if state.authen_counts[(body["pid"], today)] > AUTHEN_PER_DAY:
            return nhso_error(400, message=AUTHEN_LIMIT_MESSAGE)
        code = "PP" + f"{state.rng.randrange(10**10):010d}"
        now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
        state.history.setdefault(body["pid"], []).append(_history_entry(
            code, now_ms, body["serviceCode"], hcode, body["sourceId"]))
        return web.json_response({"authenCode": code, "pid": body["pid"],
                                  "serviceCode": body["serviceCode"]})

    return await _with_faults(request, "authen", process)


def _person(state: State, pid: str) -> dict[str, Any]:
    person = state.people.get(pid, {})
    return {
        "firstName": person.get("firstName", "ทดสอบ"),
        "lastName": person.get("lastName", "สัญญา"),
        "sex": person.get("sex", "ชาย"),
        "birthDate": person.get("birthDate", {"year": 1987, "month": 1}),
        "funds": person.get("funds", [{
            "mainInscl": {"id": "UCS", "name": "สิทธิหลักประกันสุขภาพแห่งชาติ"},
            "subInscl": {"id": "89", "name": "ช่วงอายุ 12-59 ปี"},
            "hospMain": {"hcode": "10699", "hname": "โรงพยาบาลทดสอบ"},
            "hospSub": {"hcode": "03812", "hname": "รพ.สต.ทดสอบ"},
            "hospMainOp": {"hcode": "10699", "hname": "โรงพยาบาลทดสอบ"},
            "paidModel": "1", "startDateTime": "2020-01-01T00:00:00",
            "expireDateTime": None}]),
    }


async def check_authen_status(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    pid = request.query.get("personalId", "")
    day = request.query.get("serviceDate", "")
    service_code = request.query.get("serviceCode")

    async def process(hcode: str) -> web.Response:
        if not pid_ok(pid):
            return nhso_error(400, message="personalId ไม่ถูกต้อง")
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            return nhso_error(400, message="serviceDate must be YYYY-MM-DD")
        person = _person(state, pid)
        entries = [e for e in state.history.get(pid, [])
                   if e["serviceDateTime"][:10] == day
                   and (not service_code or e["service"]["code"] == service_code)]
        fund = person["funds"][0] if person["funds"] else {}
        if state.status_format == 2:
            # The second format seen in the field: results is a JSON string.
            return web.json_response({"success": True, "message": "", "results": json.dumps(
                [{"hospitalCode": e["hospital"]["hcode"], "serviceDate": e["serviceDateTime"],
                  "authCode": e["claimCode"]} for e in entries], ensure_ascii=False)})
        return web.json_response({
            "statusAuthen": "Y" if entries else "N",
            "statusMessage": "พบข้อมูลการเข้ารับบริการ" if entries else "ไม่พบข้อมูล",
            "firstName": person["firstName"], "lastName": person["lastName"],
            "sex": person["sex"], "birthDate": person["birthDate"],
            "mainInscl": fund.get("mainInscl"), "subInscl": fund.get("subInscl"),
            "serviceHistories": entries})

    return await _with_faults(request, "status", process, key=pid)


async def right_search(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    pid = request.query.get("pid", "")

    async def process(hcode: str) -> web.Response:
        if not pid_ok(pid):
            return nhso_error(400, message="pid ไม่ถูกต้อง")
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T00:00:00", request.query.get("checkDate", "")):
            return nhso_error(400, message="checkDate must be YYYY-MM-DDT00:00:00")
        return web.json_response({"pid": pid, "funds": _person(state, pid)["funds"]})

    return await _with_faults(request, "rights", process)


# -- control API -----------------------------------------------------------------------------

async def control_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await request.json()
    rules = []
    for item in data.get("rules", []):
        modes = item.get("modes") or [item.get("mode")]
        if item.get("endpoint") not in ENDPOINTS or any(m not in MODES for m in modes):
            raise web.HTTPBadRequest(text=f"bad rule {item}")
        delay = item.get("delay", 2.0)
        delay = (float(delay[0]), float(delay[1])) if isinstance(delay, list) else float(delay)
        rules.append(Rule(item["endpoint"], modes, float(item.get("rate", 0.0)),
                          item.get("count"), delay, int(item.get("status", 503)),
                          item.get("key")))
    state.rules = rules
    if "seed" in data:
        state.rng = random.Random(data["seed"])
    return web.json_response({"rules": len(rules)})


async def control_reject(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.reject.update((await request.json()).get("transactionIds", []))
    return web.json_response({"reject": len(state.reject)})


async def control_tokens(request: web.Request) -> web.Response:
    for token, hcode in (await request.json()).items():
        if hcode is None:
            request.app[STATE].tokens.pop(token, None)   # NHSO revoked it
        else:
            request.app[STATE].tokens[token] = hcode
    return web.json_response({"tokens": len(request.app[STATE].tokens)})


async def control_people(request: web.Request) -> web.Response:
    request.app[STATE].people.update(await request.json())
    return web.json_response({"people": len(request.app[STATE].people)})


async def control_history(request: web.Request) -> web.Response:
    """Earlier service entries (e.g. a code of a previous day) per pid, as Check Authen
    Status lists them: ``{"<pid>": [{"claimCode", "serviceDateTime", "service",
    "hospital", "sourceChannel"}]}``."""
    for pid, entries in (await request.json()).items():
        request.app[STATE].history.setdefault(pid, []).extend(entries)
    return web.json_response({"people": len(request.app[STATE].history)})


async def control_workstation(request: web.Request) -> web.Response:
    """A claim closed somewhere else (another workstation, NHSO's web page): NHSO lists it
    like ours, but it is not counted among the claims the agent sent."""
    state = request.app[STATE]
    data = await request.json()
    code = state.next_code("EP")
    state.history.setdefault(data["pid"], []).append(_history_entry(
        code, int(data["serviceDateTime"]), data.get("claimServiceCode", "PG0060001"),
        data.get("hcode", "10699"), "ENDPOINT"))
    state.foreign.append({"pid": data["pid"], "authenCode": code})
    return web.json_response({"authenCode": code})


async def control_quirks(request: web.Request) -> web.Response:
    state = request.app[STATE]
    data = await request.json()
    state.status_format = int(data.get("statusFormat", state.status_format))
    state.bom = bool(data.get("bom", state.bom))
    return web.json_response({"statusFormat": state.status_format, "bom": state.bom})


@web.middleware
async def _with_bom(request: web.Request, handler: Any) -> web.StreamResponse:
    """NHSO replies may start with a UTF-8 BOM (docs/reference.md): with the quirk on, every
    JSON answer of an NHSO service gets one (the control API's answers do not)."""
    response = await handler(request)
    if (request.app[STATE].bom and not request.path.startswith("/_control/")
            and isinstance(response, web.Response) and response.content_type == "application/json"
            and isinstance(response.body, bytes) and response.body):
        return web.Response(status=response.status, body=b"\xef\xbb\xbf" + response.body,
                            content_type="application/json", charset="utf-8")
    return response


async def control_latency(request: web.Request) -> web.Response:
    request.app[STATE].latency = float((await request.json()).get("seconds", 0.0))
    return web.json_response({"latency": request.app[STATE].latency})


async def control_clock(request: web.Request) -> web.Response:
    request.app[STATE].clock_offset = float((await request.json()).get("offset", 0.0))
    return web.json_response({"offset": request.app[STATE].clock_offset})


async def _skewed_date(request: web.Request, response: web.StreamResponse) -> None:
    offset = request.app[STATE].clock_offset
    if offset:
        response.headers["Date"] = email.utils.formatdate(time.time() + offset, usegmt=True)


async def control_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.json_response({"reset": True})


async def control_state(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({
        "claimCounts": dict(state.claim_counts), "issued": state.issued,
        "rejectedCounts": dict(state.rejected_counts),
        "requests": dict(state.requests), "faults": dict(state.faults),
        "inflight": state.inflight, "log": state.log, "foreign": state.foreign})


def make_app(tokens: dict[str, str] | None = None) -> web.Application:
    app = web.Application(middlewares=[_with_bom])
    app[STATE] = State(tokens=dict(tokens or {}))
    app.router.add_post("/nhsoendpoint/api/nhso-claim-detail", claim_detail)
    app.router.add_post("/nhsoendpoint/api/AuthenCode", authen_code)
    app.router.add_get("/nhsoendpoint/api/v2/right-search", right_search)
    app.router.add_get("/authencodestatus/api/check-authen-status", check_authen_status)
    app.router.add_post("/_control/faults", control_faults)
    app.router.add_post("/_control/reject", control_reject)
    app.router.add_post("/_control/tokens", control_tokens)
    app.router.add_post("/_control/people", control_people)
    app.router.add_post("/_control/history", control_history)
    app.router.add_post("/_control/latency", control_latency)
    app.router.add_post("/_control/workstation", control_workstation)
    app.router.add_post("/_control/quirks", control_quirks)
    app.router.add_post("/_control/reset", control_reset)
    app.router.add_post("/_control/clock", control_clock)
    app.on_response_prepare.append(_skewed_date)
    app.router.add_get("/_control/state", control_state)
    return app


async def serve(host: str, port: int, tokens: dict[str, str]) -> None:
    runner = web.AppRunner(make_app(tokens), access_log=None, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port")
    parser.add_argument("--token", default="", help="a bearer token to accept")
    parser.add_argument("--hcode", default="10699", help="the hcode that token is for")
    args = parser.parse_args(argv)
    tokens = {args.token: args.hcode} if args.token else {}
    try:
        asyncio.run(serve(args.host, args.port, tokens))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
