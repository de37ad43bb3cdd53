"""The NHSO agent's local API, shape for shape: existing hospital pages work unchanged.

What callers read, and what we add, is documented in docs/integration.md. Coverage fields
come only from the NHSO lookup (``agent.nhso``) when a token is configured; without it the
card fields are answered with ``coverageStatus: "unavailable"`` and the header
``X-Coverage: unavailable``: coverage is never made up.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..card import layout as L
from ..card.session import CardRead
from ..card.values import CardDate, CardText
from ..errors import AgentError, PcscUnavailable
from .keys import CARD_SERVICE, CONFIG, COVERAGE
from .query import query_flag
from .responses import error_response, json_response

log = logging.getLogger(__name__)

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


async def add_coverage(app: web.Application, out: dict[str, Any]) -> str:
    """Merge the NHSO coverage fields into ``out``; returns the ``X-Coverage`` state.

    ``unavailable``: no NHSO service or no token, card fields only. ``ok``: fields merged.
    A failed lookup with a token configured raises (500, as the NHSO agent answers).
    """
    lookup = app.get(COVERAGE)
    if lookup is None or not await token_configured(app):
        out["coverageStatus"] = "unavailable"
        return "unavailable"
    coverage = await lookup.coverage_for(out["pid"])
    if not isinstance(coverage, dict):
        out["coverageStatus"] = "unavailable"
        return "unavailable"
    for key, value in coverage.items():
        if key not in out or key in ("checkDate",):
            out[key] = value
    out["coverageStatus"] = "ok"
    return "ok"


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


async def _read(request: web.Request, *, coverage: bool) -> web.Response:
    service = request.app[CARD_SERVICE]
    terminal = request.query.get("terminal") or None
    try:
        want_image = query_flag(request, "readImageFlag")
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
    app.router.add_get("/api/preference", preference)
    app.router.add_get("/api/api/preference", preference)
