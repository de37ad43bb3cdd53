"""The OpenAPI fragment of the NHSO routes (``routes.py``), added to ``/v1/openapi.json``.

Documented from what the handlers answer; the bodies NHSO itself defines are left open.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..api.openapi import (
    GUARD_STATUSES,
    INT,
    JSON,
    S_NULL,
    STATUS_TEXT,
    B,
    S,
    error_responses,
    json_ok,
    obj,
    query_param,
    ref,
    register_openapi,
)

NHSO_SCHEMAS: dict[str, Any] = {
    "SpringError": obj({"timestamp": S, "status": INT, "error": S,
                        "message": {**S, "description": "Thai, then ' / ' and the English"},
                        "path": S, "code": S, "message_th": S, "message_en": S,
                        "errors": {"type": "array", "items": obj(
                            {"field": S, "defaultMessage": {**S, "description": "Thai"},
                             "defaultMessageEn": S}, ["field", "defaultMessage"])}},
                       ["timestamp", "status", "error", "message", "path"], extra=True,
                       description="The NHSO agent's error shape on /api/nhso-service"),
    "AuthenCode": obj({"claimType": S_NULL, "claimCode": S_NULL, "hcode": S_NULL,
                       "claimDateTime": S_NULL, "checkDate": S},
                      description="claimCode null: no code within the look-back"),
    "ConfirmSaved": obj({"pid": S, "claimType": S, "correlationId": S, "createdDate": S,
                         "claimCode": {**S, "pattern": "^PP"}, "status": {"const": 200},
                         "hn": S, "hcode": S, "mobile": S},
                        ["pid", "claimType", "correlationId", "createdDate", "claimCode",
                         "status"]),
    "Claim": {"type": "object", "required": ["id", "transactionId", "status"],
              "properties": {"id": S, "transactionId": S, "status": {
                  "enum": ["queued", "sending", "sent", "failed", "needs_review"]},
                  "review": {"type": ["object", "null"], "description":
                             "needs_review: why, and NHSO's records that may be this claim",
                             "properties": {"reason": S, "candidates": {
                                 "type": "array", "items": {"type": "object"}}}},
                  "resolution": {"type": ["object", "null"], "description":
                                 "staff's choice on a review: action, claimCode, by, at"}}},
    "VisitInput": {
        "type": "object", "additionalProperties": True,
        "description": "The claim the visit becomes (every field of POST /v1/claims, "
                       "checked the same way; pid is the patient whose card confirms "
                       "it) plus an optional label",
        "required": ["pid", "transactionId", "visitNumber", "mainInsclCode",
                     "claimServiceCode", "serviceDateTime", "invoiceDateTime",
                     "totalAmount", "paidAmount", "privilegeAmount"],
        "properties": {"pid": {**S, "pattern": "^[0-9]{13}$"}, "transactionId": S,
                       "label": {**S, "maxLength": 80,
                                 "description": "What staff and the patient recognise, "
                                                "e.g. \"ห้องตรวจ 3, 09:40\""}}},
    "Visit": obj({"id": S, "transactionId": S,
                  "status": {"enum": ["waiting", "confirmed", "cancelled", "expired"]},
                  "label": S, "serviceDate": {**S, "description": "YYYY-MM-DD, Bangkok"},
                  "claimId": S_NULL, "due": {"type": "boolean"}, "createdAt": S,
                  "updatedAt": S, "claim": {"type": "object"}},
                 ["id", "transactionId", "status", "label", "serviceDate", "claimId"]),
    "VisitSourceAnswer": obj(
        {"visits": {"type": "array", "maxItems": 50, "items": ref("VisitInput")}},
        ["visits"],
        description="Not a route of the agent: what a HIS's visit source answers to "
                    "GET <visitSourceUrl>?pid=<13 digits>&date=<YYYY-MM-DD, Bangkok> sent "
                    "with Authorization: Bearer <key> over HTTPS (docs/kiosk.md). Visits "
                    "of other patients or days, and invalid ones, are left out"),
    "VisitConfirmed": obj({"visit": ref("Visit"), "claimId": S,
                           "status": {**S, "description": "the claim's status"},
                           "claimCode": {**S_NULL, "description": "NHSO's EP code once "
                                         "the claim is sent (null while on its way)"},
                           "error": {"type": ["object", "null"]}},
                          ["visit", "claimId", "status", "claimCode"]),
}


def _nhso_op(summary: str, ok: dict[str, Any], *, error: str, statuses: tuple[int, ...],
             tags: list[str], params: list[dict[str, Any]] | None = None,
             body: bool = False) -> dict[str, Any]:
    responses = {**ok, **{str(s): {"description": STATUS_TEXT.get(s, "Error"), "content": {
        JSON: {"schema": ref(error)}}} for s in statuses}, **error_responses(*GUARD_STATUSES)}
    op: dict[str, Any] = {"summary": summary, "tags": tags, "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": {
            "type": "object"}}}}
    return op


def nhso_paths() -> dict[str, Any]:
    v1, compat = ["NHSO"], ["NHSO-compatible"]
    pid = {"name": "pid", "in": "path", "required": True,
           "schema": {**S, "pattern": "^[0-9]{13}$"}}
    any_json = {"type": ["object", "array"]}
    visit_id = {"name": "id", "in": "path", "required": True, "schema": S}
    v1_errors = (400, 404, 409, 415, 502, 503)
    register_visit = _nhso_op(
        "Register a visit waiting for the patient's card (kiosk, confirmVisit); the same "
        "transactionId and body again is a duplicate, not a second visit",
        {**json_ok(ref("Visit"), "Registered", status="201"),
         **json_ok(ref("Visit"), "Already registered")},
        error="Error", statuses=(400, 409, 415, 503), tags=v1, body=True)
    register_visit["requestBody"]["content"][JSON]["schema"] = ref("VisitInput")
    return {
        "/v1/claims": {
            "post": _nhso_op("Queue a close-claim for NHSO (sent by the outbox, never twice). "
                             "The same visit under another transactionId is refused (409 "
                             "claim_same_visit, naming the existing claim) unless newVisit",
                             json_ok(ref("Claim"), "Queued", status="202"), error="Error",
                             statuses=v1_errors, tags=v1, body=True,
                             params=[query_param("newVisit", B,
                                                 "true: another visit at the same time")]),
            "get": _nhso_op("Claims in the outbox", json_ok(obj({
                "claims": {"type": "array", "items": ref("Claim")}, "count": INT})),
                error="Error", statuses=(400, 503), tags=v1,
                params=[query_param("date", S, "YYYY-MM-DD"),
                        query_param("status", S, "comma-separated statuses"),
                        query_param("limit", INT, "1-1000")]),
        },
        "/v1/claims/retry": {"post": _nhso_op(
            "Send waiting claims now; with status \"failed\", queue refused claims again",
            json_ok(obj({"requeued": INT, "queued": INT}, ["requeued", "queued"])),
            error="Error", statuses=(400, 415, 503), tags=v1, body=True)},
        "/v1/claims/{id}/review": {"post": _nhso_op(
            "Staff's choice on a claim in needs_review: {\"action\": \"take\", "
            "\"claimCode\": listed code} or {\"action\": \"resend\"}; recorded with the claim",
            json_ok(ref("Claim")), error="Error", statuses=(400, 404, 409, 415, 503), tags=v1,
            params=[{"name": "id", "in": "path", "required": True, "schema": S}], body=True)},
        "/v1/claims/{id}": {"get": _nhso_op(
            "One claim and what happened to it", json_ok(ref("Claim")), error="Error",
            statuses=(404, 503), tags=v1,
            params=[{"name": "id", "in": "path", "required": True, "schema": S}])},
        "/v1/visits": {
            "post": register_visit,
            "get": _nhso_op("Visits, by patient, day and status (expired ones are marked "
                            "when the Bangkok service day is over)", json_ok(obj({
                                "visits": {"type": "array", "items": ref("Visit")},
                                "count": INT})), error="Error", statuses=(400, 503),
                            tags=v1,
                            params=[query_param("pid", S, "citizen id"),
                                    query_param("date", S, "YYYY-MM-DD or today (Bangkok)"),
                                    query_param("status", S, "comma-separated statuses"),
                                    query_param("limit", INT, "1-1000")]),
        },
        "/v1/visits/{id}": {
            "get": _nhso_op("One visit", json_ok(ref("Visit")), error="Error",
                            statuses=(404, 503), tags=v1, params=[visit_id]),
            "delete": _nhso_op("Cancel a waiting visit", json_ok(ref("Visit")),
                               error="Error", statuses=(404, 409, 503), tags=v1,
                               params=[visit_id]),
        },
        "/v1/visits/{id}/confirm": {"post": _nhso_op(
            "The patient confirms with their card: a card with the visit's citizen id must "
            "be in a reader now; the visit becomes a claim in the outbox exactly once",
            json_ok(ref("VisitConfirmed")), error="Error",
            statuses=(400, 404, 409, 415, 500, 503), tags=v1,
            params=[visit_id, query_param("wait", INT, "0-30 seconds to wait for NHSO's "
                                          "answer (the EP code)")])},
        "/v1/nhso/authen-status": {"get": _nhso_op(
            "NHSO Check Authen Status for a person and day", json_ok({"type": "object"}),
            error="Error", statuses=(400, 502, 503), tags=v1,
            params=[query_param("pid", S, "citizen id"), query_param("date", S, "YYYY-MM-DD"),
                    query_param("serviceCode", S, "PG... service code")])},
        "/v1/nhso/status": {"get": _nhso_op(
            "NHSO settings (no secrets), token set or not, outbox counts",
            json_ok({"type": "object"}), error="Error", statuses=(503,), tags=v1)},
        "/api/nhso-service/latest-authen-code/{pid}": {"get": _nhso_op(
            "This hospital's latest authen code, looking back authenLookbackDays days "
            "(every key present, null when there is none)",
            json_ok(ref("AuthenCode")), error="SpringError", statuses=(400, 500),
            tags=compat, params=[pid])},
        "/api/nhso-service/latest-5-authen-code-all-hospital/{pid}": {"get": _nhso_op(
            "Up to 5 of today's authen codes, any hospital", json_ok(any_json),
            error="SpringError", statuses=(400, 500), tags=compat, params=[pid])},
        "/api/nhso-service/confirm-save": {"post": _nhso_op(
            "Confirm the service and get an Authen Code (PP...)",
            json_ok(ref("ConfirmSaved")), error="SpringError", statuses=(400, 500),
            tags=compat, body=True)},
        "/api/nhso-service/save-as-draft": {"post": _nhso_op(
            "Not offered: its upstream meaning is not public. A valid body gets a final 400 "
            "compat_unsupported (errors[0].defaultMessage says why) so callers stop "
            "retrying", {}, error="SpringError", statuses=(400,), tags=compat, body=True)},
    }


def document_nhso(app: web.Application) -> None:
    """Add the NHSO routes to the agent's OpenAPI document."""
    register_openapi(app, nhso_paths(), NHSO_SCHEMAS)
