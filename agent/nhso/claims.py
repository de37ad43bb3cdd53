"""Claims: validated, put on disk in the outbox, sent by the sender, listed for staff.

No lookups live here (``lookups.py``); the token comes from ``TokenState``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import NhsoNotConfigured
from .outbox import Claim, Outbox
from .sender import ClaimSender
from .settings import NhsoSettings
from .token import TokenState
from .validation import validate_claim

log = logging.getLogger(__name__)

# How claim events leave the room: (type, payload) to the app's event bus.
Publish = Callable[[str, dict[str, Any]], None]


class ClaimDesk:
    def __init__(self, settings: NhsoSettings, outbox: Outbox, sender: ClaimSender,
                 tokens: TokenState, publish: Publish) -> None:
        self.settings = settings
        self.outbox = outbox
        self.sender = sender
        self.tokens = tokens
        self.publish = publish
        self.settings_error: str | None = None   # why the settings files were not usable

    async def submit(self, body: Any, *, new_visit: bool = False) -> tuple[Claim, bool]:
        claim_body = validate_claim(body, self.settings)
        missing = [name for name in ("hcode", "sourceId", "recorderPid")
                   if not claim_body.get(name)]
        if missing:
            raise NhsoNotConfigured(self.settings_error or "not set: " + ", ".join(missing))
        token_hcode = self.settings.token_hcode
        if token_hcode and claim_body["hcode"] != token_hcode:
            # NHSO would refuse every one of them: better to say so now.
            raise NhsoNotConfigured(f"the token is for hcode {token_hcode}, the claim for "
                                    f"{claim_body['hcode']}")
        await self.tokens.require()
        claim, created = await self.outbox.submit(claim_body, new_visit=new_visit)
        if created:
            self.publish("claim.queued", {"id": claim.id, "transactionId": claim.transaction_id,
                                          "status": claim.status})
            self.sender.wake()
        return claim, created

    async def retry(self, status: str) -> dict[str, int]:
        """Send waiting claims now; with ``failed``, also queue refused claims again.

        A refused claim never reached NHSO's records, so sending it again cannot make a
        duplicate; it helps when the refusal came from a cause that is now fixed.
        """
        requeued = await self.outbox.requeue_failed() if status == "failed" else []
        for claim in requeued:
            self.publish("claim.queued", {"id": claim.id, "transactionId": claim.transaction_id,
                                          "status": "queued"})
        await self.outbox.wake_all()
        self.sender.wake()
        counts = await self.outbox.counts()
        return {"requeued": len(requeued), "queued": counts.get("queued", 0)}

    async def review(self, claim_id: str, action: str, code: str | None, by: str) -> Claim:
        """Staff's choice on a claim in review (``take`` a listed code, or ``resend``)."""
        claim = await self.outbox.resolve_review(claim_id, action, code, by)
        log.info("claim %s reviewed: %s", claim.id, action)
        if action == "take":
            self.publish("claim.sent", {"id": claim.id, "transactionId": claim.transaction_id,
                                        "status": claim.status, "authenCode": claim.authen_code,
                                        "seq": claim.seq, "recovered": True})
        else:
            self.publish("claim.queued", {"id": claim.id,
                                          "transactionId": claim.transaction_id,
                                          "status": claim.status})
            self.sender.wake()
        return claim

    async def get(self, claim_id: str) -> Claim | None:
        return await self.outbox.get(claim_id)

    async def find(self, *, day: str | None, statuses: tuple[str, ...],
                   limit: int) -> list[Claim]:
        return await self.outbox.list(day=day, statuses=statuses, limit=limit)

