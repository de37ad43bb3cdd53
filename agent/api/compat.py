"""The NHSO agent's local API, shape for shape: existing hospital pages work unchanged.

What callers read, and what we add, is documented in docs/integration.md. Coverage values
come only from the NHSO lookup (``agent.nhso``) when a token is configured. The coverage
keys are always in the ``/read`` answer (callers index them): null when unknown, with the
reason in ``coverageStatus``; coverage is never made up.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..card import layout as L
from ..card.session import CardRead
from ..card.values import CardDate, CardText, citizen_id_valid
from ..errors import AgentError, BadRequest, PcscUnavailable
from .keys import CARD_SERVICE, CONFIG, COVERAGE
from .query import query_flag
from .responses import error_response, json_response

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Standard Thai title (prefix) codes that NHSO's pages expect in ``titleName``, with the
# spellings found on cards. Prefixes outside this table are answered as the card's text.
TITLE_CODES: dict[str, str] = {
    "เด็กชาย": "001", "ด.ช.": "001", "ดช.": "001",
    "เด็กหญิง": "002", "ด.ญ.": "002", "ดญ.": "002",
    "นาย": "003",
    "นางสาว": "004", "น.ส.": "004", "นส.": "004",
    "นาง": "005",
}
# English prefixes, used only when the Thai prefix is empty.
TITLE_CODES_EN: dict[str, str] = {
    "master": "001", "mr.": "003", "mr": "003", "miss": "004", "mrs.": "005", "mrs": "005",
}
NATION_THAI = "099"
# Citizen id categories (first digit) of people registered without Thai nationality.
NON_THAI_CATEGORIES = ("0", "6", "7")
TOKEN_MASK = "********"


def title_code(text: CardText) -> str:
    """``titleName``: the standard code when known, else the prefix as written on the card."""
    prefix_th = text.name_th.prefix.strip()
    if prefix_th:
        return TITLE_CODES.get(prefix_th.replace(" ", ""), prefix_th)
    prefix_en = text.name_en.prefix.strip()
    return TITLE_CODES_EN.get(prefix_en.lower(), prefix_en)


def nation_code(citizen_id: str) -> str:
    """``099`` (Thai) unless the id's category is one given to people without Thai nationality."""
    if not citizen_id or citizen_id[0] in NON_THAI_CATEGORIES:
        return ""
    return NATION_THAI


def thai_age(birth: CardDate, today: dt.date) -> str:
    """``38 ปี 10 เดือน 7 วัน``, only to the precision the card knows (day, month or year)."""
    year, month, day = birth.year, birth.month, birth.day
    if year is None:
        return ""
    if month is None:
        return f"{max(today.year - year, 0)} ปี"
    months = (today.year - year) * 12 + (today.month - month)
    days = 0
    if day is not None:
        if today.day >= day:
            days = today.day - day
        else:
            months -= 1
            # Days from the birthday in the previous month to today.
            prev_month_end = today.replace(day=1) - dt.timedelta(days=1)
            days = max(prev_month_end.day - day, 0) + today.day
    if months < 0:
        return "0 ปี 0 เดือน" + (" 0 วัน" if day is not None else "")
    out = f"{months // 12} ปี {months % 12} เดือน"
    return out + (f" {days} วัน" if day is not None else "")


def local_timestamp(moment: dt.datetime) -> str:
    """Local wall time without a zone, as the NHSO agent answers (``2025-11-07T17:26:31``)."""
    return moment.astimezone().replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass(frozen=True)
class _Answer:
    """What a key of the answer may depend on besides its card field."""

    card: CardRead
    stamp: str
    today: dt.date
    image: bool


# The NHSO agent's answer, key by key in the order it writes them. A card key is given the
# value of the layout field that lists it in ``compat`` (agent/card/layout.py), the answer's
# own keys None; a key whose value comes out None is left out.
ANSWER_KEYS: dict[str, Callable[[Any, _Answer], Any]] = {
    "pid": lambda cid, _: cid,
    "titleName": lambda _name, a: title_code(a.card.text),
    "fname": lambda name, _: name.first,
    "lname": lambda name, _: name.last,
    "nation": lambda cid, _: nation_code(cid),
    "birthDate": lambda birth, _: birth.raw,
    "sex": lambda gender, _: gender.th,
    "age": lambda birth, a: thai_age(birth, a.today),
    "transDate": lambda _, a: a.stamp,
    "checkDate": lambda _, a: a.stamp,
    "correlationId": lambda _, a: str(uuid.uuid4()),
    # Additions (documented): the raw prefix, so a code never hides what the card says.
    "titleNameText": lambda name, _: name.prefix,
    "mname": lambda name, _: name.middle or None,
    "image": lambda photo, a: (base64.b64encode(photo).decode()
                               if a.image and photo is not None else None),
}
# Which card field each card key is made from: the layout says.
CARD_KEYS: dict[str, L.Field] = {key: f for f in L.FIELDS for key in f.compat}
if set(CARD_KEYS) != set(ANSWER_KEYS) - {"transDate", "checkDate", "correlationId"}:
    raise RuntimeError("the card layout's NHSO keys and the NHSO answer disagree")


def card_fields(card: CardRead, *, image: bool, now: dt.datetime) -> dict[str, Any]:
    """The card part of ``/api/smartcard/read``, in the NHSO agent's names and formats."""
    answer = _Answer(card, local_timestamp(now), now.date(), image)
    out: dict[str, Any] = {}
    for key, make in ANSWER_KEYS.items():
        source = CARD_KEYS.get(key)
        value = make(None if source is None else card.value(source), answer)
        if value is not None:
            out[key] = value
    return out


# -- NHSO coverage ------------------------------------------------------------------------
async def token_configured(app: web.Application) -> bool:
    """Whether the NHSO room is mounted and holds a token (False when the keyring fails)."""
    lookup = app.get(COVERAGE)
    if lookup is None:
        return False
    try:
        return bool(await lookup.token_configured())
    except AgentError as exc:
        log.warning("cannot tell whether an NHSO token is set: %s", exc.code)
        return False


# The coverage keys callers index directly (``body["mainInscl"]``, ``claimTypes.map``): they
# are in every /read answer, null (an empty list for claimTypes) when NHSO did not say.
COVERAGE_KEYS: dict[str, Any] = {
    "mainInscl": None, "subInscl": None, "hospMain": None, "hospSub": None,
    "hospMainOp": None, "paidModel": None, "startDateTime": None, "expireDateTime": None,
    "claimTypes": [],
}
# Why coverage is (not) there, in ``coverageStatus``. ``X-Coverage`` keeps its two values.
COVERAGE_STATES = {
    "ok": "NHSO answered; the keys hold its coverage",
    "no_rights": "NHSO answered but lists no coverage for this person",
    "no_token": "no NHSO token is set on this computer (a fresh install)",
    "keyring_unavailable": "the keyring holding the token cannot be asked",
    "nhso_off": "this agent runs without the NHSO functions",
}


async def coverage_reason(app: web.Application) -> str | None:
    """Why no lookup can be made (a ``COVERAGE_STATES`` key), or None when it can."""
    lookup = app.get(COVERAGE)
    if lookup is None:
        return "nhso_off"
    try:
        configured = await lookup.token_configured()
    except AgentError as exc:
        log.warning("cannot tell whether an NHSO token is set: %s", exc.code)
        return "keyring_unavailable"
    if configured is None:
        return "keyring_unavailable"
    return None if configured else "no_token"


async def coverage_of(app: web.Application, pid: str) -> tuple[dict[str, Any], str]:
    """Every coverage key for ``pid`` and the ``coverageStatus``; nothing is made up.

    A failed lookup with a token configured raises (500, as the NHSO agent answers).
    """
    out = {key: (list(value) if isinstance(value, list) else value)
           for key, value in COVERAGE_KEYS.items()}
    reason = await coverage_reason(app)
    lookup = app.get(COVERAGE)
    if reason is not None or lookup is None:
        return out, reason or "nhso_off"
    coverage = await lookup.coverage_for(pid)
    if not isinstance(coverage, dict):
        return out, "no_token"           # the token went away between the two questions
    for key in COVERAGE_KEYS:
        if key in coverage and coverage[key] is not None:
            out[key] = coverage[key]
    if not isinstance(out["claimTypes"], list):
        out["claimTypes"] = []
    return out, ("ok" if out["mainInscl"] is not None else "no_rights")


async def add_coverage(app: web.Application, out: dict[str, Any]) -> str:
    """Merge the coverage keys into ``out``; returns the ``X-Coverage`` value (ok/unavailable)."""
    fields, status = await coverage_of(app, out["pid"])
    for key, value in fields.items():
        out.setdefault(key, value)
    out["coverageStatus"] = status
    return "ok" if status in ("ok", "no_rights") else "unavailable"


# -- handlers -----------------------------------------------------------------------------
def compat_status(exc: AgentError) -> int:
    """NHSO pages branch on two answers: 418 (no reader) and 500 (anything else)."""
    if isinstance(exc, PcscUnavailable) or exc.code == "no_reader":
        return 418
    if exc.code == "reader_not_found":      # only with our ``terminal`` parameter
        return 404
    if exc.code == "bad_request":           # a flag that is neither true nor false
        return 400
    return 500


async def terminals(request: web.Request) -> web.Response:
    return json_response([{"terminalName": name, "isPresent": present}
                          for name, present in request.app[CARD_SERVICE].terminals()])


async def _read(request: web.Request, *, coverage: bool,
                photo_allowed: bool = True) -> web.Response:
    service = request.app[CARD_SERVICE]
    terminal = request.query.get("terminal") or None
    try:
        # ``photo_allowed``: False on the LAN listener unless the admin enabled the photo;
        # the answer then has no ``image``, as with readImageFlag=false.
        want_image = query_flag(request, "readImageFlag") and photo_allowed
        _slot, card = await service.get_card(terminal, photo=want_image)
        out = card_fields(card, image=want_image, now=dt.datetime.now().astimezone())
        headers = {}
        if coverage:
            headers["X-Coverage"] = await add_coverage(request.app, out)
    except AgentError as exc:
        return error_response(exc, request, status=compat_status(exc))
    return json_response(out, headers=headers)


async def read(request: web.Request) -> web.Response:
    return await _read(request, coverage=True)


async def read_card_only(request: web.Request) -> web.Response:
    return await _read(request, coverage=False)


def card_routes(*, photo: bool) -> list[tuple[str, Handler]]:
    """The compat card routes alone (GET path, handler): what the LAN listener serves."""
    async def lan_read(request: web.Request) -> web.Response:
        return await _read(request, coverage=True, photo_allowed=photo)

    async def lan_read_card_only(request: web.Request) -> web.Response:
        return await _read(request, coverage=False, photo_allowed=photo)

    return [("/api/smartcard/terminals", terminals), ("/api/smartcard/read", lan_read),
            ("/api/smartcard/read-card-only", lan_read_card_only)]


async def probe(request: web.Request) -> web.Response:
    """``/api/smartcard/probe/{pid}``: some pages call it; its upstream shape is not public.

    Best public evidence: a coverage lookup by citizen id, without a card. So the answer is
    the coverage part of ``/read`` for that pid (every key, null when unknown, and why in
    ``coverageStatus``); never a 404, which made callers retry forever (unverified).
    """
    pid = request.match_info["pid"]
    try:
        if not (len(pid) == 13 and pid.isascii() and pid.isdigit() and citizen_id_valid(pid)):
            raise BadRequest("pid must be a 13-digit citizen id with a valid check digit")
        fields, status = await coverage_of(request.app, pid)
    except AgentError as exc:
        return error_response(exc, request, status=compat_status(exc))
    now = dt.datetime.now().astimezone()
    return json_response({"pid": pid, **fields, "coverageStatus": status,
                          "checkDate": local_timestamp(now)})


async def preference(request: web.Request) -> web.Response:
    """The NHSO agent hands its token to any page here; we say only whether one is set."""
    config = request.app[CONFIG]
    service = request.app[CARD_SERVICE]
    configured = await token_configured(request.app)
    default = config.default_terminal
    if default is None and service.reader_names():
        default = service.choose_reader().name
    return json_response({"defaultTerminal": default or "",
                          "token": TOKEN_MASK if configured else "",
                          "tokenConfigured": configured})


def setup_compat(app: web.Application) -> None:
    app.router.add_get("/api/smartcard/terminals", terminals)
    app.router.add_get("/api/smartcard/read", read)
    app.router.add_get("/api/smartcard/read-card-only", read_card_only)
    app.router.add_get("/api/smartcard/probe/{pid}", probe)
    app.router.add_get("/api/preference", preference)
    app.router.add_get("/api/api/preference", preference)
