"""The visit source: the HIS's HTTPS endpoint that lists a patient's visits of a day, for
a kiosk that is not the PC where the visits were registered.

    GET <visitSourceUrl>?pid=<13 digits>&date=<YYYY-MM-DD, Bangkok>
    Authorization: Bearer <the key kept in the keyring (``thaicard-agent visit-source key``)>
    -> 200 {"visits": [<VisitInput>, ...]}     the claim fields and a label, as POST /v1/visits

Each visit answered is registered here like ``POST /v1/visits`` (idempotent by its
``transactionId``), so the patient's confirm follows the one path into the outbox. TLS is
verified against the system's store, like NHSO's. Any failure is one typed error that says
plainly what happened (timed out after N s, HTTP 500, not the documented JSON, no key).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import aiohttp

from .. import __version__
from ..errors import AgentError, VisitSourceUnavailable
from .client import make_ssl_context
from .settings import NhsoSettings
from .token import TokenStore

log = logging.getLogger(__name__)

KEY_USERNAME = "visit-source-key"
MAX_ANSWER = 1_000_000              # bytes: a day's visits of one patient are a few KiB
MAX_VISITS = 50


class VisitSource:
    def __init__(self, settings: NhsoSettings, key_store: TokenStore) -> None:
        self.settings = settings
        self.key_store = key_store

    @property
    def configured(self) -> bool:
        return bool(self.settings.visit_source_url)

    async def fetch(self, pid: str, day: str) -> list[Any]:
        """The visits the HIS lists for this patient and day (unchecked items)."""
        try:
            key = await asyncio.to_thread(self.key_store.get)
        except AgentError as exc:
            raise VisitSourceUnavailable(f"the key cannot be read: {exc.detail or exc.code}") \
                from None
        if not key:
            raise VisitSourceUnavailable("no key is set (thaicard-agent visit-source key set)")
        seconds = self.settings.visit_source_timeout
        timeout = aiohttp.ClientTimeout(total=seconds)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=make_ssl_context()), trust_env=True,
            timeout=timeout, headers={"User-Agent": f"thaicard-agent/{__version__}",
                                      "Accept": "application/json"})
        try:
            async with session, session.get(
                    self.settings.visit_source_url, params={"pid": pid, "date": day},
                    headers={"Authorization": f"Bearer {key}"}) as resp:
                if resp.status != 200:
                    raise VisitSourceUnavailable(f"the HIS answered HTTP {resp.status}")
                raw = await resp.content.read(MAX_ANSWER + 1)
        except TimeoutError:
            raise VisitSourceUnavailable(f"no answer within {seconds:g} s") from None
        except aiohttp.ClientError as exc:
            raise VisitSourceUnavailable(f"cannot reach the HIS: {type(exc).__name__}") \
                from None
        if len(raw) > MAX_ANSWER:
            raise VisitSourceUnavailable(f"the answer is larger than {MAX_ANSWER} bytes")
        try:
            body = json.loads(raw)
        except ValueError:
            raise VisitSourceUnavailable("the answer is not JSON") from None
        visits = body.get("visits") if isinstance(body, dict) else None
        if not isinstance(visits, list) or len(visits) > MAX_VISITS:
            raise VisitSourceUnavailable(
                f'the answer is not {{"visits": [...]}} with at most {MAX_VISITS} visits')
        return visits
