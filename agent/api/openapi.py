"""The OpenAPI 3.1 document of every HTTP endpoint, served at ``/v1/openapi.json``.

Written by hand (the API is small and its shapes are a contract), checked by the tests
against real responses. Other rooms add their paths through ``register_openapi`` (the NHSO
routes: ``agent/nhso/openapi.py``); the helpers below are shared with them.
"""

from __future__ import annotations

import copy
from typing import Any, assert_never

from aiohttp import web

from .. import __version__
from ..card import layout as L
from ..errors import ERROR_TABLE
from .keys import OPENAPI_EXTRA
from .responses import json_response

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(props: dict[str, Any], required: list[str] | None = None, *,
        extra: bool = False, description: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props,
                           "required": list(props) if required is None else required,
                           "additionalProperties": extra}
    if description:
        out["description"] = description
    return out


S = {"type": "string"}
B = {"type": "boolean"}
INT = {"type": "integer"}
N = {"type": "number"}
S_NULL = {"type": ["string", "null"]}
I_NULL = {"type": ["integer", "null"]}
OBJ_NULL = {"type": ["object", "null"]}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [schema, {"type": "null"}]}


# The schema of each /v1 view of a card value (agent/card/values.py view_json); a parsed
# value's schema is named after its kind.
_PARSED = {L.Kind.DATE: "CardDate", L.Kind.GENDER: "Gender", L.Kind.ADDRESS: "Address"}


def _described(schema: dict[str, Any], f: L.Field) -> dict[str, Any]:
    return {**schema, "description": f.doc} if f.doc else schema


def _view_schema(f: L.Field) -> dict[str, Any]:
    return {key: _described(schema, f) if key == f.name else schema
            for key, schema in _bare_view_schema(f).items()}


def _bare_view_schema(f: L.Field) -> dict[str, Any]:
    match f.view:
        case L.View.TEXT:
            return {f.name: S}
        case L.View.CHECKED:
            return {f.name: S, f"{f.name}_valid": B}
        case L.View.NAME_TH | L.View.NAME_EN:
            return {f.name: ref("Name")}
        case L.View.PARSED:
            return {f.name: ref(_PARSED[f.kind])}
        case L.View.PRINTED:
            return {f.name: obj({"raw": S, "formatted": S})}
        case L.View.REQUEST:
            return {f.name: obj({"raw": S, "well_formed": B})}
        case L.View.NUMBER:
            return {f.name: INT}
        case L.View.NONE:
            return {}
        case _:
            assert_never(f.view)


def card_schema() -> dict[str, Any]:
    """``Card``: every field of the layout as /v1 shows it, then what the read adds."""
    props: dict[str, Any] = {}
    for f in L.FIELDS:
        if not f.group:
            props.update(_view_schema(f))
    for group in L.json_groups(L.FIELDS):
        members: dict[str, Any] = {}
        for f in L.FIELDS:
            if f.group == group:
                members.update(_view_schema(f))
        if group == "card":         # the read adds the ATR and the generation it names
            members.update({"atr": S, "generation": S})
        props[group] = obj(members)
    required = [*props, "photo", "read"]
    props.update({
        "photo": nullable(obj({"size": INT, "format": {"const": "image/jpeg"},
                               "base64": {**S, "contentEncoding": "base64"}},
                              ["size", "format"])),
        "photo_error": ref("ErrorInfo"),
        "nhso_applet": {"type": ["object", "null"],
                        "description": "The NHSO applet's fields (asked for with nhso=1); "
                                       "null when the card has no such applet"},
        "laser_id": {**S, "description": "The laser id printed on the back (laser=1)"},
        "laser_id_command": {**S, "description": "Which laser id command form answered "
                                                 "(hex): 80 00 00 00, 80 00 00 00 07 or "
                                                 "80 00 00 00 FF, tried in that order"},
        "laser_error": ref("ErrorInfo"),
        "read": ref("ReadStats"),
    })
    return obj(props, required)


# The coverage keys of /api/smartcard/read: always present, null when unknown.
COVERAGE_PROPS: dict[str, Any] = {
    "coverageStatus": {"type": "string",
                       "enum": ["ok", "no_rights", "no_token", "keyring_unavailable",
                                "nhso_off"],
                       "description": "Why the coverage keys hold what they hold: ok (NHSO "
                                      "answered), no_rights (NHSO lists none), no_token "
                                      "(fresh install), keyring_unavailable, nhso_off. "
                                      "Values are never made up."},
    "mainInscl": {**S_NULL, "description": "(CODE) name, from the NHSO lookup"},
    "subInscl": S_NULL, "hospMain": OBJ_NULL, "hospSub": OBJ_NULL, "hospMainOp": OBJ_NULL,
    "paidModel": S_NULL, "startDateTime": S_NULL, "expireDateTime": S_NULL,
    "claimTypes": {"type": "array", "items": {"type": "object"},
                   "description": "Always a list; empty when unknown"},
}

SCHEMAS: dict[str, Any] = {
    "Error": obj({
        "timestamp": S, "status": INT, "error": S,
        "message": {**S, "description": "Thai on /api/... paths (what NHSO pages show), "
                                        "English elsewhere"},
        "path": S, "code": {"type": "string", "enum": sorted(ERROR_TABLE)},
        "message_en": S, "message_th": S, "detail": S,
    }, ["timestamp", "status", "error", "message", "path", "code", "message_en", "message_th"],
        extra=True, description="Spring Boot style error body (what NHSO-agent callers read) "
                                "plus a stable code. Typed errors may add fields (e.g. errors)."),
    "Terminal": obj({"terminalName": S, "isPresent": B}),
    "CompatCard": obj({
        "pid": {**S, "pattern": "^[0-9]{13}$"},
        "titleName": {**S, "description": "Standard title code (001 เด็กชาย, 002 เด็กหญิง, "
                                          "003 นาย, 004 นางสาว, 005 นาง); other prefixes "
                                          "as written on the card"},
        "titleNameText": {**S, "description": "The prefix as written on the card"},
        "fname": S, "mname": S, "lname": S,
        "nation": {**S, "description": "099 = Thai; empty when the citizen id category is "
                                       "one of people without Thai nationality"},
        "birthDate": {**S, "description": "Buddhist era YYYYMMDD as on the card "
                                          "(00 for an unknown month/day)"},
        "sex": {"type": "string", "enum": ["ชาย", "หญิง", "ไม่ระบุ"]},
        "age": {**S, "examples": ["38 ปี 10 เดือน 7 วัน"]},
        "transDate": {**S, "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"},
        "checkDate": {**S, "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"},
        "correlationId": {**S, "format": "uuid"},
        "image": {**S, "contentEncoding": "base64", "contentMediaType": "image/jpeg",
                  "description": "Only with readImageFlag=true and a readable photo"},
        **COVERAGE_PROPS,
    }, ["pid", "titleName", "titleNameText", "fname", "lname", "nation", "birthDate", "sex",
        "age", "transDate", "checkDate", "correlationId"], extra=True,
        description="/read always has every coverage key and coverageStatus; "
                    "/read-card-only has none of them"),
    "CompatCoverage": obj({"pid": {**S, "pattern": "^[0-9]{13}$"}, **COVERAGE_PROPS,
                           "checkDate": {**S, "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$"}},
                          description="Coverage by citizen id (probe; upstream shape "
                                      "unverified)"),
    "Preference": obj({
        "defaultTerminal": S,
        "token": {**S, "description": "'********' when an NHSO token is set, else empty: "
                                      "the token itself is never given out"},
        "tokenConfigured": B}),
    "ReaderInfo": obj({
        "name": S, "present": B,
        "status": {"type": "string", "enum": ["empty", "reading", "ready", "error"]},
        "atr": S_NULL, "generation": S_NULL, "photo": B,
        "error": nullable(ref("ErrorInfo")),
    }),
    "ErrorInfo": obj({"code": S, "message": S, "message_th": S, "detail": S},
                     ["code", "message", "message_th"]),
    "Name": obj({"prefix": S, "first": S, "middle": S, "last": S, "full": S}),
    "CardDate": obj({
        "raw": S, "iso": S_NULL,
        "precision": {"type": "string",
                      "enum": ["day", "month", "year", "lifelong", "none", "invalid"]},
        "lifelong": B, "year": I_NULL, "month": I_NULL, "day": I_NULL}),
    "Gender": obj({"raw": S, "en": {"type": "string", "enum": ["male", "female", "unknown"]},
                   "th": S}),
    "Address": obj({"raw": S, "parts": {"type": "array", "items": S, "minItems": 8,
                                        "maxItems": 8},
                    "full": S, "house_no": S, "moo": S, "trok": S, "soi": S, "road": S,
                    "other": S, "subdistrict": S, "district": S, "province": S}),
    "ReadStats": obj({"apdus": INT, "text_apdus": INT, "text_ms": N, "photo_ms": N,
                      "total_ms": N}),
    "Card": card_schema(),
    "CardResponse": obj({"reader": S, "status": S,
                         "read_at": {**S_NULL, "format": "date-time"}, "card": ref("Card")}),
    "Status": obj({
        "name": {"const": "thaicard-agent"}, "version": S,
        "started_at": {**S, "format": "date-time"}, "uptime_s": N,
        "backend": {"type": "string", "enum": ["pcsc", "demo"]},
        "pcsc": obj({"state": {"type": "string",
                               "enum": ["starting", "available", "unavailable"]},
                     "error": S_NULL, "detail": S_NULL}),
        "readers": {"type": "array", "items": ref("ReaderInfo")},
        "reads": INT,
        "events": obj({"clients": INT, "last_seq": INT}),
        "refused": INT,
        "nhso": obj({"available": B, "tokenConfigured": B, "token": {
            "type": ["object", "null"],
            "description": "what NHSO last said of the token; null without the NHSO part",
            "properties": {"state": {"enum": ["refused", "accepted", "unchecked"]},
                           "since": {"type": ["string", "null"]}, "message": S,
                           "action_en": S, "action_th": S}}}),
        "config": obj({"port": INT, "backend": S, "defaultTerminal": S_NULL,
                       "allowedOrigins": {"type": "array", "items": S}, "readPhoto": B,
                       "readTimeout": N, "logLevel": S,
                       "originScopes": {"type": "object", "additionalProperties": {
                           "type": "array", "items": S}},
                       "defaultScopes": {"type": "array", "items": S},
                       "policyKeys": {"type": "array", "items": S}}),
        "refusals": obj({
            "counts": {"type": "object", "additionalProperties": INT,
                       "description": "kind.reason -> refused requests since start"},
            "recent": {"type": "array", "items": obj({
                "kind": {"type": "string", "enum": ["origin", "lan"]}, "source": S,
                "reason": S, "count": INT, "first": S, "last": S, "path": S})}},
            description="Refused requests: why a page or HIS server cannot reach the agent"),
        "lan": {"type": "object", "required": ["enabled"], "properties": {"enabled": B},
                "description": "The opt-in LAN listener for HIS servers (docs/admin.md)"},
    }),
    "Readers": obj({"readers": {"type": "array", "items": ref("ReaderInfo")}}),
    "DemoInsert": obj({"reader": S, "variant": {"type": "integer", "minimum": 0,
                                                "maximum": 99}}, []),
    "DemoInserted": obj({"reader": S, "inserted": {"const": True}, "variant": INT}),
    "DemoRemoved": obj({"reader": S, "removed": {"const": True}}),
    "EventEnvelope": obj({
        "v": {"const": 1},
        "type": {"type": "string", "examples": [
            "snapshot", "heartbeat", "reader.added", "reader.removed", "card.inserted",
            "card.read", "card.photo", "card.removed", "card.error", "pcsc.available",
            "pcsc.unavailable", "reader.error", "subscribed", "pong", "error"]},
        "seq": INT, "time": {**S, "format": "date-time"}, "reader": S_NULL,
    }, ["v", "type", "seq", "time", "reader"], extra=True,
        description="Every /v1/events message; the payload keys sit beside these "
                    "(docs/integration.md lists them per type)."),
}


def error_responses(*statuses: int) -> dict[str, Any]:
    return {str(s): {"description": STATUS_TEXT.get(s, "Error"),
                     "content": {JSON: {"schema": ref("Error")}}} for s in statuses}


STATUS_TEXT = {400: "Bad request",
               403: "Origin not allowed (origin_not_allowed), or outside the origin's scopes "
                    "(scope_denied)",
               404: "Unknown reader or path", 408: "Body not sent in time",
                405: "Method not allowed", 413: "Body larger than 64 KiB",
                415: "Body is not JSON", 418: "No reader (NHSO agent semantics)",
                421: "Host header not allowed",
                429: "Too many requests or WebSockets at once from this caller",
                500: "No card or read failure (NHSO agent semantics)",
                503: "PC/SC unavailable or reader busy", 504: "Read timed out"}
GUARD_STATUSES = (403, 421, 429)


def json_ok(schema: dict[str, Any], description: str = "OK", *,
             headers: dict[str, Any] | None = None, status: str = "200") -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return {status: out}


def _op(summary: str, responses: dict[str, Any], *, tags: list[str],
        params: list[dict[str, Any]] | None = None, body: dict[str, Any] | None = None,
        description: str | None = None, errors: tuple[int, ...] = ()) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "tags": tags,
                          "responses": {**responses, **error_responses(*GUARD_STATUSES, *errors)}}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": False, "content": {JSON: {"schema": body}}}
    return op


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


READER_PARAM = {"name": "name", "in": "path", "required": True, "schema": S,
                "description": "Reader name (URL-encoded), as in /v1/readers"}
PHOTO_PARAM = query_param("photo", {"type": "string", "enum": ["0", "1", "true", "false"]},
                     "1: include the photo (base64) and wait for it")
IMAGE_FLAG = query_param("readImageFlag", {"type": "string", "enum": ["true", "false"]},
                    "true: include the photo as raw base64 JPEG in 'image'")
FLAG = {"type": "string", "enum": ["0", "1", "true", "false"]}
APPLET_PARAMS = [
    query_param("nhso", FLAG, "1: also read the card's NHSO coverage applet (once per "
                              "insertion; nhso_applet is null when the card has none)"),
    query_param("laser", FLAG, "1: also read the laser id (once per insertion; "
                               "laser_error laser_unavailable when the card has none)"),
]
TERMINAL = query_param("terminal", S, "Reader name; default: the configured default terminal, "
                                 "else the reader with a card, else the first")
COMPAT_READ_ERRORS = (400, 404, 418, 500)   # 400: a readImageFlag neither true nor false
X_COVERAGE = {"X-Coverage": {
    "description": "ok (NHSO answered), or unavailable (no lookup made; coverageStatus "
                   "says why)",
    "schema": {"type": "string", "enum": ["ok", "unavailable"]}}}


def base_paths() -> dict[str, Any]:
    compat, v1, page = ["NHSO-compatible"], ["v1"], ["page"]
    return {
        "/": {"get": {"summary": "Status page (Thai and English)", "tags": page,
                      "responses": {"200": {"description": "HTML",
                                            "content": {"text/html": {"schema": S}}},
                                    **error_responses(*GUARD_STATUSES)}}},
        "/kiosk": {"get": {"summary": "Self-service kiosk: the patient's card confirms "
                                      "today's visits (Thai and English)", "tags": page,
                           "responses": {"200": {"description": "HTML",
                                                 "content": {"text/html": {"schema": S}}},
                                         **error_responses(*GUARD_STATUSES)}}},
        "/static/{file}": {"get": {
            "summary": "Status page and kiosk assets", "tags": page,
            "parameters": [{"name": "file", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": ["status.js", "status.css",
                                                                  "example.html", "kiosk.js",
                                                                  "kiosk.css"]}}],
            "responses": {"200": {"description": "The asset", "content": {
                "text/javascript": {"schema": S}, "text/css": {"schema": S},
                "text/html": {"schema": S}}}, **error_responses(*GUARD_STATUSES, 404)}}},
        "/api/smartcard/terminals": {"get": _op(
            "Readers, NHSO agent shape", json_ok({"type": "array", "items": ref("Terminal")}),
            tags=compat, description="[] when no reader (or no PC/SC).")},
        "/api/smartcard/read": {"get": _op(
            "Read the card, with NHSO coverage when a token is configured",
            json_ok(ref("CompatCard"), headers=X_COVERAGE), tags=compat,
            params=[IMAGE_FLAG, TERMINAL], errors=COMPAT_READ_ERRORS)},
        "/api/smartcard/read-card-only": {"get": _op(
            "Read the card fields only", json_ok(ref("CompatCard")), tags=compat,
            params=[IMAGE_FLAG, TERMINAL], errors=COMPAT_READ_ERRORS)},
        "/api/smartcard/probe/{pid}": {"get": _op(
            "Coverage by citizen id, without a card (upstream meaning unverified)",
            json_ok(ref("CompatCoverage")), tags=compat,
            params=[{"name": "pid", "in": "path", "required": True,
                     "schema": {**S, "pattern": "^[0-9]{13}$"}}], errors=(400, 500),
            description="Every coverage key, null when unknown, coverageStatus says why. "
                        "400 for a bad citizen id, 500 when NHSO fails (as /read).")},
        "/api/preference": {"get": _op(
            "Default terminal; whether an NHSO token is set (never the token)",
            json_ok(ref("Preference")), tags=compat)},
        "/api/api/preference": {"get": _op(
            "Same as /api/preference (a health probe some callers use)",
            json_ok(ref("Preference")), tags=compat)},
        "/v1/status": {"get": _op("Agent status", json_ok(ref("Status")), tags=v1)},
        "/v1/readers": {"get": _op("Readers and card state", json_ok(ref("Readers")),
                                   tags=v1)},
        "/v1/card": {"get": _op(
            "The card in the default reader (configured, else the one with a card)",
            json_ok(ref("CardResponse")), tags=v1, params=[PHOTO_PARAM, *APPLET_PARAMS],
            errors=(400, 404, 418, 500, 503, 504))},
        "/v1/readers/{name}/card": {"get": _op(
            "Every card field, raw and parsed", json_ok(ref("CardResponse")), tags=v1,
            params=[READER_PARAM, PHOTO_PARAM, *APPLET_PARAMS],
            errors=(400, 404, 418, 500, 503, 504))},
        "/v1/readers/{name}/photo": {"get": _op(
            "The card's photo", {"200": {"description": "JPEG",
                                         "content": {"image/jpeg": {"schema": {
                                             "type": "string", "format": "binary"}}}}},
            tags=v1, params=[READER_PARAM], errors=(404, 418, 500, 503, 504))},
        "/v1/demo/card": {
            "post": _op("Demo mode only: insert a demo card", json_ok(
                ref("DemoInserted"), "Inserted", status="202"), tags=v1,
                body=ref("DemoInsert"), errors=(400, 404, 408, 413, 415)),
            "delete": _op("Demo mode only: remove the card", json_ok(
                ref("DemoRemoved"), "Removed", status="202"), tags=v1,
                params=[query_param("reader", S, "Reader name (default: as for /v1/card)")],
                errors=(404,)),
        },
        "/v1/allowed-origins": {"post": _op(
            "Allow a refused page (the status page's button); from the agent's own page or "
            "a local program only",
            json_ok(obj({"origin": S, "allowed": {"const": True}, "savedTo": S})), tags=v1,
            body=obj({"origin": {**S, "examples": ["https://his.hospital.go.th"]}}),
            errors=(400, 413, 415), description="403 setting_locked when the admin policy "
                                                "fixes allowedOrigins")},
        "/v1/events": {"get": _op(
            "Event stream (WebSocket)", {"101": {"description": "Switching to WebSocket; "
                                                                "messages are EventEnvelope"}},
            tags=v1, errors=(400,),
            params=[query_param("types", S, "Comma-separated event types or prefixes (card.*)"),
                    query_param("readers", S, "Comma-separated reader names"),
                    query_param("photo", {"type": "string", "enum": ["0", "1", "true", "false"]},
                           "0: no card.photo events, no photos in snapshots")])},
        "/v1/openapi.json": {"get": _op("This document", json_ok({"type": "object"}),
                                        tags=v1)},
        "/v1/client.js": {"get": {"summary": "JavaScript client (ES module)", "tags": v1,
                                  "responses": {"200": {"description": "JavaScript", "content": {
                                      "text/javascript": {"schema": S}}},
                                      **error_responses(*GUARD_STATUSES)}}},
    }


def build_document(app: web.Application) -> dict[str, Any]:
    extra = app.get(OPENAPI_EXTRA, {})
    paths = base_paths()
    paths.update(copy.deepcopy(extra.get("paths", {})))
    schemas = copy.deepcopy(SCHEMAS)
    schemas.update(copy.deepcopy(extra.get("schemas", {})))
    return {
        "openapi": "3.1.0",
        "info": {"title": "Thai Card Agent local API", "version": __version__,
                 "description": "Reads Thai national ID cards for web pages on this computer. "
                                "NHSO-compatible endpoints under /api, our API under /v1. "
                                "Guide: docs/integration.md; error codes: docs/errors.md.",
                 "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}},
        "servers": [{"url": "http://127.0.0.1:{port}",
                     "variables": {"port": {"default": "8189"}}}],
        "paths": paths,
        "components": {"schemas": schemas},
    }


def register_openapi(app: web.Application, paths: dict[str, Any],
                     schemas: dict[str, Any] | None = None) -> None:
    """For extensions: add documented paths (and their schemas) to the document."""
    extra = app.setdefault(OPENAPI_EXTRA, {"paths": {}, "schemas": {}})
    extra["paths"].update(paths)
    extra["schemas"].update(schemas or {})


async def openapi_json(request: web.Request) -> web.Response:
    return json_response(build_document(request.app))


def setup_openapi(app: web.Application) -> None:
    app.setdefault(OPENAPI_EXTRA, {"paths": {}, "schemas": {}})
    app.router.add_get("/v1/openapi.json", openapi_json)
