"""What the tray shows, derived only from the agent's public event stream.

``TrayState.apply`` takes one event envelope (or the snapshot sent on connect) and returns
the notifications it calls for. Card data is cut down on arrival to what the menu shows —
the masked citizen id and the name — and dropped when the card leaves the reader.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from agent.card.values import mask_citizen_id


class Status(enum.Enum):
    """Overall state, most urgent first (the icon shows the first that applies)."""

    STARTING = "starting"
    OFFLINE = "offline"
    PCSC_UNAVAILABLE = "pcsc_unavailable"
    NO_READER = "no_reader"
    ERROR = "error"
    READING = "reading"
    CARD_PRESENT = "card_present"
    IDLE = "idle"


class Claims(enum.Enum):
    NONE = "none"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class CardSummary:
    reader: str
    masked_id: str
    name_th: str
    name_en: str

    def name(self, lang: str) -> str:
        return (self.name_th if lang == "th" else self.name_en) or self.name_en or self.name_th


@dataclass
class ReaderView:
    name: str
    present: bool = False
    status: str = "empty"          # empty | reading | ready | error
    error_code: str | None = None
    card: CardSummary | None = None


@dataclass(frozen=True)
class Notice:
    """A notification to show: a text key of ``tray.i18n`` and its values."""

    key: str
    values: tuple[tuple[str, str], ...] = ()

    def kwargs(self) -> dict[str, str]:
        return dict(self.values)


@dataclass
class TrayState:
    connected: bool = False
    ever_connected: bool = False
    pcsc: str = "starting"          # starting | available | unavailable
    readers: dict[str, ReaderView] = field(default_factory=dict)
    claims_pending: int = 0
    claims_failed: int = 0
    claims_review: int = 0          # needs_review: nothing is sent until staff choose
    token_refused: bool = False     # NHSO says "Invalid token."
    refused_sources: set[str] = field(default_factory=set)   # notified once each
    last_card: CardSummary | None = None
    token_set: bool | None = None   # None: not known (no NHSO part in this agent)

    # -- derived views ---------------------------------------------------------------
    @property
    def status(self) -> Status:
        if not self.connected:
            return Status.OFFLINE if self.ever_connected else Status.STARTING
        if self.pcsc == "unavailable":
            return Status.PCSC_UNAVAILABLE
        if not self.readers:
            return Status.NO_READER
        states = {r.status for r in self.readers.values() if r.present}
        if "error" in states:
            return Status.ERROR
        if "reading" in states:
            return Status.READING
        if states:
            return Status.CARD_PRESENT
        return Status.IDLE

    @property
    def claims(self) -> Claims:
        if self.claims_failed or self.claims_review or self.token_refused:
            return Claims.FAILED
        if self.claims_pending:
            return Claims.PENDING
        return Claims.NONE

    @property
    def error_codes(self) -> list[str]:
        return [r.error_code for r in self.readers.values() if r.error_code]

    # -- updates -----------------------------------------------------------------------
    def disconnected(self) -> None:
        """The event stream dropped: what we knew may be stale, so forget it."""
        self.connected = False
        self.readers.clear()
        self.last_card = None

    def apply(self, event: dict[str, Any]) -> list[Notice]:
        kind = event.get("type")
        reader = event.get("reader")
        handler = _HANDLERS.get(str(kind))
        if handler is None:
            return []
        return handler(self, reader, event) or []

    def _snapshot(self, _reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        self.connected = self.ever_connected = True
        pcsc = ev.get("pcsc")
        if isinstance(pcsc, dict):
            pcsc = pcsc.get("state")
        if pcsc in ("starting", "available", "unavailable"):
            self.pcsc = str(pcsc)
        readers = ev.get("readers")
        if isinstance(readers, list):
            known = {r.name: r for r in self.readers.values()}
            self.readers = {}
            for info in readers:
                if not isinstance(info, dict) or not isinstance(info.get("name"), str):
                    continue
                name = info["name"]
                view = ReaderView(name, bool(info.get("present")),
                                  str(info.get("status") or "empty"))
                err = info.get("error")
                view.error_code = err.get("code") if isinstance(err, dict) else None
                old = known.get(name)
                if view.present and isinstance(info.get("card"), dict):
                    view.card = summarize_card(name, info["card"])
                elif view.present and old is not None and old.present:
                    view.card = old.card
                self.readers[name] = view
            self._refresh_last_card()
        claims = ev.get("claims")
        if isinstance(claims, dict):
            self.set_claims(claims.get("pending"), claims.get("failed"))
        return []

    def _reader_added(self, reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        if reader:
            self.readers.setdefault(reader, ReaderView(reader))
        return []

    def _reader_removed(self, reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        if reader:
            self.readers.pop(reader, None)
            self._refresh_last_card()
        return []

    def _card_inserted(self, reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        if reader:
            self.readers[reader] = ReaderView(reader, present=True, status="reading")
            self._refresh_last_card()
        return []

    def _card_read(self, reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        if not reader:
            return []
        view = self.readers.setdefault(reader, ReaderView(reader))
        view.present = True
        view.status = "ready"
        view.error_code = None
        view.card = summarize_card(reader, ev.get("card"))
        self.last_card = view.card
        return [Notice("notify.card_read", (("reader", reader),))]

    def _card_removed(self, reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        if reader and reader in self.readers:
            self.readers[reader] = ReaderView(reader)
            self._refresh_last_card()
        return []

    def _card_error(self, reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        if reader:
            view = self.readers.setdefault(reader, ReaderView(reader, present=True))
            view.status = "error"
            view.error_code = str(ev.get("code") or "internal_error")
            view.card = None
            self._refresh_last_card()
        return []

    def _pcsc(self, _reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        was = self.pcsc
        self.pcsc = "available" if ev.get("type") == "pcsc.available" else "unavailable"
        if self.pcsc == "unavailable":
            self.readers.clear()
            self.last_card = None
            if was != "unavailable":
                return [Notice("notify.pcsc_stopped")]
        return []

    def _claim(self, _reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        counts = ev.get("counts")
        if isinstance(counts, dict):
            self.set_claims(counts.get("pending"), counts.get("failed"))
        else:
            # Without counts, keep a running tally; a fresh snapshot corrects it.
            kind = ev.get("type")
            if kind == "claim.queued":
                self.claims_pending += 1
            elif kind == "claim.sent":
                self.claims_pending = max(0, self.claims_pending - 1)
            elif kind == "claim.failed":
                self.claims_pending = max(0, self.claims_pending - 1)
                self.claims_failed += 1
        if ev.get("type") == "claim.needs_review":
            self.claims_review += 1
            self.claims_pending = max(0, self.claims_pending - 1)
            return [Notice("notify.claim_review")]
        if ev.get("type") == "claim.failed":
            error = ev.get("error")
            code = error.get("code") if isinstance(error, dict) else ev.get("code")
            return [Notice("notify.claim_failed", (("code", str(code or "nhso_rejected")),))]
        return []

    def _visit(self, _reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        """A visit staff must see to: still unconfirmed late in the day, or expired. The
        label is what staff wrote for it (no citizen id travels in visit events)."""
        label = str(ev.get("label") or ev.get("transactionId") or "?")[:80]
        key = "notify.visit_due" if ev.get("type") == "visit.due" else "notify.visit_expired"
        return [Notice(key, (("label", label),))]

    def _token(self, _reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        was = self.token_refused
        self.token_refused = ev.get("state") == "refused"
        return [Notice("notify.token_refused")] if self.token_refused and not was else []

    def _refused(self, _reader: str | None, ev: dict[str, Any]) -> list[Notice]:
        """A page (or LAN server) was refused: tell staff once per source, with the status
        page as the place to see why and allow it. The agent sends one event per source."""
        source = str(ev.get("source") or "?")[:120]
        if source in self.refused_sources:
            return []
        self.refused_sources.add(source)
        kind = "notify.lan_refused" if ev.get("kind") == "lan" else "notify.page_refused"
        return [Notice(kind, (("source", source),))]

    def set_claims(self, pending: object, failed: object, review: object = None) -> None:
        if isinstance(pending, int) and pending >= 0:
            self.claims_pending = pending
        if isinstance(failed, int) and failed >= 0:
            self.claims_failed = failed
        if isinstance(review, int) and review >= 0:
            self.claims_review = review

    def _refresh_last_card(self) -> None:
        """The last card stays shown only while it is still in its reader."""
        cards = [r.card for r in self.readers.values() if r.present and r.card is not None]
        if self.last_card is not None and self.last_card in cards:
            return
        self.last_card = cards[-1] if cards else None


_HANDLERS = {
    "snapshot": TrayState._snapshot,
    "reader.added": TrayState._reader_added,
    "reader.removed": TrayState._reader_removed,
    "card.inserted": TrayState._card_inserted,
    "card.read": TrayState._card_read,
    "card.removed": TrayState._card_removed,
    "card.error": TrayState._card_error,
    "pcsc.available": TrayState._pcsc,
    "pcsc.unavailable": TrayState._pcsc,
    "claim.queued": TrayState._claim,
    "claim.sent": TrayState._claim,
    "claim.failed": TrayState._claim,
    "claim.needs_review": TrayState._claim,
    "nhso.token": TrayState._token,
    "access.refused": TrayState._refused,
    "visit.due": TrayState._visit,
    "visit.expired": TrayState._visit,
}


def summarize_card(reader: str, card: object) -> CardSummary | None:
    """Keep only what the menu shows; the rest of the card is never stored here."""
    if not isinstance(card, dict):
        return None
    cid = card.get("citizen_id")
    name_th = card.get("name_th") or {}
    name_en = card.get("name_en") or {}
    return CardSummary(
        reader=reader,
        masked_id=mask_citizen_id(cid) if isinstance(cid, str) else "",
        name_th=str(name_th.get("full", "")) if isinstance(name_th, dict) else "",
        name_en=str(name_en.get("full", "")) if isinstance(name_en, dict) else "",
    )
