"""The doctor's report from the running agent: ``/v1/doctor`` (JSON) and ``/doctor`` (text).

The status page links to ``/doctor`` and the tray's "Diagnostics…" opens it, so staff on
the phone with IT read out the same report ``thaicard-agent doctor`` prints. It runs in a
worker thread (the checks block: PC/SC, sockets, NHSO) and without a test read: the agent
reads inserted cards itself, and ``/v1/status`` shows how that went.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..doctor.checks import Context
from ..doctor.report import Report
from ..doctor.run import run_doctor
from .keys import CONFIG
from .openapi import register_openapi
from .responses import json_response


async def _report(request: web.Request) -> Report:
    ctx = Context(config=request.app[CONFIG], test_read=False)
    return await asyncio.to_thread(run_doctor, ctx)


async def doctor_json(request: web.Request) -> web.Response:
    return json_response((await _report(request)).to_json())


async def doctor_text(request: web.Request) -> web.Response:
    return web.Response(text=(await _report(request)).to_text(), content_type="text/plain",
                        charset="utf-8", headers={"Cache-Control": "no-store"})


OPENAPI_PATHS = {
    "/v1/doctor": {"get": {
        "summary": "The doctor's report (as `thaicard-agent doctor --json`, no test read)",
        "tags": ["monitoring"],
        "responses": {"200": {"description": "checks with verdicts",
                              "content": {"application/json": {"schema": {"type": "object"}}}}}}},
    "/doctor": {"get": {
        "summary": "The doctor's report as text, Thai and English",
        "tags": ["monitoring"],
        "responses": {"200": {"description": "the report",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
}


def setup_diagnostics(app: web.Application) -> None:
    app.router.add_get("/v1/doctor", doctor_json)
    app.router.add_get("/doctor", doctor_text)
    register_openapi(app, OPENAPI_PATHS)
