"""The app-scoped NHSO room: the token, claims and lookups, each behind its own object.

    tokens  (token.TokenState)      the keyring, cached and watched
    claims  (claims.ClaimDesk)      validate, put in the outbox, send, list
    lookups (lookups.NhsoLookups)   coverage, authen codes, confirm-save
    visits  (visits.VisitDesk)      visits waiting for the patient's card, then claims

``routes.py`` exposes them over HTTP; the web room asks ``lookups`` (as its
``CoverageLookup``) to fill the coverage fields of ``/api/smartcard/read``. Claim events go
to ``publish(type, payload)``, which the assembly connects to the app's event bus.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import OutboxUnavailable
from .claims import ClaimDesk, Publish
from .client import NhsoClient
from .lookups import NhsoLookups
from .outbox import Outbox
from .sender import ClaimSender
from .settings import NhsoSettings
from .token import TOKEN_CACHE_SECONDS, TokenState, TokenStore
from .visit_source import KEY_USERNAME as VISIT_SOURCE_KEY
from .visit_source import VisitSource
from .visits import VisitDesk

log = logging.getLogger(__name__)

class NhsoService:
    def __init__(self, settings: NhsoSettings, *, token_store: TokenStore | None = None,
                 publish: Publish | None = None,
                 token_check_interval: float = TOKEN_CACHE_SECONDS) -> None:
        self.settings = settings
        self.listeners: list[Publish] = [publish] if publish else []
        self.outbox = Outbox(settings.outbox_path)
        token_store = token_store or TokenStore()
        self.tokens = TokenState(token_store, on_new_token=self._new_token,
                                 check_interval=token_check_interval, publish=self.publish)
        self.client = NhsoClient(settings, self.tokens.require)
        # Every NHSO answer tells the token's state (refused: shown at once, everywhere).
        self.client.on_token = self.tokens.nhso_answered
        self.sender = ClaimSender(
            settings, self.outbox, self.client, self.publish,
            token_retry_delay=lambda: self.tokens.retry_delay(settings.token_retry))
        self.claims = ClaimDesk(settings, self.outbox, self.sender, self.tokens, self.publish)
        self.lookups = NhsoLookups(settings, self.client, self.tokens)
        self.visit_source = VisitSource(settings, token_store.sibling(VISIT_SOURCE_KEY))
        self.visits = VisitDesk(settings, self.outbox, self.claims, self.publish,
                                source=self.visit_source)
        self.listeners.append(self.visits.on_event)

    @property
    def settings_error(self) -> str | None:
        """Why the settings files were not usable (claims are refused with it)."""
        return self.claims.settings_error

    @settings_error.setter
    def settings_error(self, problem: str | None) -> None:
        self.claims.settings_error = problem

    async def start(self) -> None:
        try:
            await self.outbox.open()
        except OutboxUnavailable as exc:
            # Claims need the outbox, reading cards does not: the agent stays up and each
            # claim is refused with outbox_unavailable and this reason.
            log.error("claim outbox unavailable: %s", exc.detail)
        await self.client.start()
        if self.outbox.is_open:
            await self.sender.start()
            await self.visits.start()
        self.tokens.start()

    async def stop(self) -> None:
        await self.tokens.stop()
        await self.visits.stop()
        await self.sender.stop()
        await self.client.close()
        await self.outbox.close()

    async def _new_token(self) -> None:
        await self.outbox.wake_all()
        self.sender.wake()

    def publish(self, type_: str, payload: dict[str, Any]) -> None:
        for listener in list(self.listeners):
            try:
                listener(type_, payload)
            except Exception:
                log.exception("event listener failed for %s", type_)

    async def status(self) -> dict[str, Any]:
        return {"settings": self.settings.public_view(),
                "missing": self.settings.missing_for_claims(),
                "settingsError": self.settings_error,
                "tokenConfigured": await self.tokens.configured(),
                "token": self.tokens.health(),
                "outbox": await self.outbox.counts()}
