"""The real PC/SC backend: the only module that imports pyscard.

It uses the low-level ``smartcard.scard`` API because the monitor needs what the
high-level one hides: one ``SCardGetStatusChange`` over every reader plus the
``\\\\?PnP?\\Notification`` pseudo-reader (reader arrival/departure) that blocks until
something happens, ``SCardCancel`` to wake it, and the event counter in the high word of
each reader's state (it changes with every insertion and removal).

pcsc-lite serialises the calls made on one context, so the context blocked in
``SCardGetStatusChange`` belongs to the monitor thread alone; every card connection gets
its own short-lived context, which also lets two readers be read at the same time.

Field rules (docs/pcsc.md): readers are addressed by name; the ATR comes
from the reader state (no connect just to look); connect SHARED with T0|T1 and disconnect
with LEAVE so another program's session is never reset; one read runs in one transaction
(``begin_transaction``/``end_transaction``), and a card reset by another program raises
``CardReset`` so the core starts the read again; a connect that meets a freshly inserted
card not ready, a lost link or a sharing violation is retried with a short bounded
backoff; a command is retried once (after a reconnect) on a communication error; every
call has a timeout, and a command that timed out is never repeated on its handle; a card
pulled mid-read ends the read with ``CardRemoved``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from smartcard import scard

from ..errors import (
    AgentError,
    CardRemoved,
    CardReset,
    CardUnresponsive,
    NoCard,
    PcscUnavailable,
    ReaderBusy,
    ReaderError,
    ReaderNotFound,
    ReadTimeout,
)
from .base import CardChannel, ReaderBackend, ReaderState

log = logging.getLogger(__name__)
T = TypeVar("T")

PNP_READER = "\\\\?PnP?\\Notification"

# Windows' code for a broken link to the card; pcsc-lite names the same value
# SCARD_E_COMM_DATA_LOST and pyscard exports neither name.
SCARD_E_COMM_ERROR = 0x8010002F

# The service is gone (stopped, restarted, or on Windows: the last reader was unplugged).
_SERVICE_GONE = {scard.SCARD_E_NO_SERVICE, scard.SCARD_E_SERVICE_STOPPED}
# The context no longer means anything to the service (it was restarted under us).
_CONTEXT_DEAD = _SERVICE_GONE | {scard.SCARD_E_INVALID_HANDLE, scard.SCARD_F_COMM_ERROR}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD}
_READER_GONE = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE}
# A card that was inserted a moment ago may not be powered yet; a swap may lose the link for
# a moment; a fast re-insert (or another program) may hold the card: short bounded retries.
_NOT_SETTLED = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_W_UNPOWERED_CARD}
_TRANSIENT_CONNECT = _NOT_SETTLED | {SCARD_E_COMM_ERROR, scard.SCARD_E_SHARING_VIOLATION}
# Transient link failures that deserve one reconnect and one more try of the command.
_RETRYABLE = {SCARD_E_COMM_ERROR, scard.SCARD_E_NOT_TRANSACTED, scard.SCARD_F_COMM_ERROR,
              scard.SCARD_F_UNKNOWN_ERROR}

_PROTOCOLS = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
# Older readers (the ACR38U-SPC) negotiate the RAW protocol: offered when T=0/T=1 fail.
_WITH_RAW = _PROTOCOLS | scard.SCARD_PROTOCOL_RAW
_EVENT_COUNT_SHIFT = 16
_NO_PNP_RELIST_S = 2.0      # only where the PnP pseudo-reader is unsupported (old macOS)

_NAMES = {getattr(scard, n) & 0xFFFFFFFF: n for n in dir(scard)
          if n.startswith(("SCARD_E_", "SCARD_W_", "SCARD_F_", "SCARD_P_"))}
_NAMES[SCARD_E_COMM_ERROR] = "SCARD_E_COMM_ERROR"


def _code(hresult: int) -> int:
    return hresult & 0xFFFFFFFF


def scard_error_name(hresult: int) -> str:
    code = _code(hresult)
    return f"{_NAMES.get(code, 'SCARD error')} ({code:#010x})"


def _failure_name(code: int) -> str:
    return scard_error_name(code) if code else "answer without status word"


def error_for(hresult: int, what: str) -> AgentError:
    """The agent's typed error for a PC/SC result code."""
    code = _code(hresult)
    detail = f"{what}: {scard_error_name(code)}"
    if code in _SERVICE_GONE:
        return PcscUnavailable(detail)
    if code == scard.SCARD_W_REMOVED_CARD:
        return CardRemoved(detail)
    if code == scard.SCARD_E_NO_SMARTCARD:
        return NoCard(detail)
    if code in _READER_GONE or code == scard.SCARD_E_NO_READERS_AVAILABLE:
        return ReaderNotFound(detail)
    if code == scard.SCARD_E_SHARING_VIOLATION:
        return ReaderBusy(detail)
    if code == scard.SCARD_E_TIMEOUT:
        return ReadTimeout(detail)
    if code == scard.SCARD_W_UNRESPONSIVE_CARD:
        return CardUnresponsive(detail)     # mostly a card inserted the wrong way round
    return ReaderError(detail)


def _establish() -> int:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    code = _code(hresult)
    if code != scard.SCARD_S_SUCCESS:
        # Without a context no reader can be seen, whatever the reason (a stopped service,
        # or a stub such as Wine's winscard answering SCARD_F_INTERNAL_ERROR).
        raise PcscUnavailable(f"SCardEstablishContext: {scard_error_name(code)}")
    return int(context)


def _release(context: int | None) -> None:
    if context is None:
        return
    try:
        scard.SCardReleaseContext(context)
    except Exception:
        log.debug("SCardReleaseContext failed", exc_info=True)


def _reader_state(name: str, event_state: int, atr: list[int] | bytes) -> ReaderState:
    present = bool(event_state & scard.SCARD_STATE_PRESENT)
    return ReaderState(
        name=name,
        present=present,
        atr=bytes(atr) if present and atr else None,
        mute=present and bool(event_state & scard.SCARD_STATE_MUTE),
        insertion=(event_state >> _EVENT_COUNT_SHIFT) & 0xFFFF,
    )


def _gone(event_state: int) -> bool:
    return bool(event_state & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_IGNORE))


class PcscBackend(ReaderBackend):
    """Readers and cards through the platform's PC/SC service.

    ``snapshot`` and ``wait_for_change`` run on the monitor thread (they own the monitor
    context); ``connect`` may be called from any thread; ``cancel`` from any thread.
    ``settle`` is the first pause before retrying a connect that found a freshly
    inserted card not ready, a lost link or a sharing violation (then twice as long, three
    retries in all); ``removal_grace`` is how long a failed command waits for the reader
    to report the removal that most likely caused it; ``transmit_timeout`` bounds every
    command (its one reconnect-and-retry included), ``connect_timeout`` every connect.
    """

    kind = "pcsc"

    def __init__(self, *, settle: float = 0.2, removal_grace: float = 1.0,
                 transmit_timeout: float = 5.0, connect_timeout: float = 10.0) -> None:
        self.settle = settle
        self.removal_grace = removal_grace
        self.transmit_timeout = transmit_timeout
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._context: int | None = None
        self._waiting = False
        self._cancelled = threading.Event()
        self._event_states: dict[str, int] = {}
        self._pnp_state = scard.SCARD_STATE_UNAWARE
        self._pnp_supported = True

    # -- the monitor context -----------------------------------------------------------------
    def _monitor_context(self) -> int:
        with self._lock:
            if self._context is None:
                self._context = _establish()
                self._pnp_state = scard.SCARD_STATE_UNAWARE
                self._event_states.clear()
            return self._context

    def _drop_context(self) -> None:
        with self._lock:
            context, self._context = self._context, None
        _release(context)

    def _read_states(self, context: int) -> tuple[list[ReaderState], dict[str, int]]:
        """Every reader with its state now (no waiting)."""
        hresult, names = scard.SCardListReaders(context, [])
        code = _code(hresult)
        if code == scard.SCARD_E_NO_READERS_AVAILABLE or (code == 0 and not names):
            return [], {}
        if code != scard.SCARD_S_SUCCESS:
            raise _ContextFailure(hresult, "SCardListReaders")
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in names])
        if _code(hresult) not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT):
            raise _ContextFailure(hresult, "SCardGetStatusChange")
        readers, events = [], {}
        for name, event_state, atr in states:
            if _gone(event_state):          # unplugged between the list and the status
                continue
            readers.append(_reader_state(name, event_state, atr))
            events[name] = event_state & ~scard.SCARD_STATE_CHANGED
        return readers, events

    def _with_context(self, action: str) -> list[ReaderState]:
        """Read the states on the monitor context, re-establishing it once if it died."""
        for attempt in (1, 2):
            context = self._monitor_context()
            try:
                readers, events = self._read_states(context)
            except _ContextFailure as failure:
                if failure.code not in _CONTEXT_DEAD:
                    raise failure.error() from None
                log.info("PC/SC context lost during %s (%s); re-establishing",
                         action, scard_error_name(failure.code))
                self._drop_context()
                if attempt == 2:
                    raise PcscUnavailable(str(failure)) from None
                continue
            with self._lock:
                self._event_states = events
            return readers
        raise AssertionError("unreachable")

    # -- ReaderBackend ---------------------------------------------------------------------
    def snapshot(self) -> list[ReaderState]:
        with self._lock:
            busy = self._waiting
        if busy:
            # The monitor context is blocked in SCardGetStatusChange and pcsc-lite would
            # queue us behind it: answer from a context of our own.
            context = _establish()
            try:
                return self._read_states(context)[0]
            except _ContextFailure as failure:
                raise failure.error() from None
            finally:
                _release(context)
        return self._with_context("snapshot")

    def wait_for_change(self, known: list[ReaderState],
                        timeout: float | None = None) -> list[ReaderState]:
        deadline = None if timeout is None else time.monotonic() + timeout
        context = self._monitor_context()
        while True:
            if self._cancelled.is_set():
                self._cancelled.clear()
                return self._with_context("cancel")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return self._with_context("timeout")
            with self._lock:
                watch = [(r.name, self._event_states.get(r.name, scard.SCARD_STATE_UNAWARE))
                         for r in known]
                pnp_state = self._pnp_state
            if self._pnp_supported:
                watch.insert(0, (PNP_READER, pnp_state))
            wait_s = remaining
            if not self._pnp_supported:
                wait_s = _NO_PNP_RELIST_S if remaining is None else min(remaining,
                                                                         _NO_PNP_RELIST_S)
            if not watch:                   # nothing to watch and no PnP: just pace re-lists
                self._cancelled.wait(wait_s)
                now = self._with_context("re-list")
                if now != known:
                    return now
                continue
            timeout_ms = scard.INFINITE if wait_s is None else max(0, int(wait_s * 1000))
            with self._lock:
                self._waiting = True
            try:
                hresult, states = scard.SCardGetStatusChange(context, timeout_ms, watch)
            finally:
                with self._lock:
                    self._waiting = False
            code = _code(hresult)
            if code == scard.SCARD_E_UNKNOWN_READER and self._pnp_supported:
                log.info("PC/SC has no PnP notification here; re-listing readers every %.0f s",
                         _NO_PNP_RELIST_S)
                self._pnp_supported = False
                continue
            if code in _CONTEXT_DEAD:
                self._drop_context()
                raise PcscUnavailable(f"SCardGetStatusChange: {scard_error_name(code)}")
            if code not in (scard.SCARD_S_SUCCESS, scard.SCARD_E_TIMEOUT,
                            scard.SCARD_E_CANCELLED):
                raise error_for(code, "SCardGetStatusChange")
            if code == scard.SCARD_S_SUCCESS and self._pnp_supported and states:
                with self._lock:
                    self._pnp_state = states[0][1] & ~scard.SCARD_STATE_CHANGED
            # Whatever woke us (a card, a reader, a connect that set INUSE), the states are
            # read afresh: cheap, and the reader list may have changed with them.
            now = self._with_context("status change")
            if code == scard.SCARD_E_CANCELLED:
                self._cancelled.clear()
                return now
            if now != known:
                return now
            context = self._monitor_context()

    def cancel(self) -> None:
        self._cancelled.set()
        with self._lock:
            context = self._context
        if context is not None:
            scard.SCardCancel(context)

    @property
    def connect_retry_delays(self) -> tuple[float, ...]:
        return (self.settle, self.settle * 2, self.settle * 2)

    def connect(self, reader: str) -> CardChannel:
        # The channel owns the context from here: it releases it when it fails or closes.
        return _PcscChannel(self, _establish(), reader)

    def close(self) -> None:
        self._drop_context()


class _ContextFailure(Exception):
    def __init__(self, hresult: int, what: str) -> None:
        self.code = _code(hresult)
        self.what = what
        super().__init__(f"{what}: {scard_error_name(hresult)}")

    def error(self) -> AgentError:
        if self.code in _CONTEXT_DEAD:
            return PcscUnavailable(str(self))
        return error_for(self.code, self.what)


class _PcscChannel(CardChannel):
    """One SHARED connection on its own context; ``close`` leaves the card powered.

    Every PC/SC call of the channel runs on the channel's own worker thread, and the caller
    waits for it with a timeout: a command that hangs (a reader that never answers) cannot
    hang the read. After a timeout the handle is never used again (repeating a command
    that timed out left readers' slots broken until replug): ``transmit`` checks that a
    fresh connection to the card works and asks for a restart of the read, or says
    ``card_unresponsive``. The stuck handle is closed once its call returns.
    """

    def __init__(self, backend: PcscBackend, context: int, reader: str) -> None:
        self._backend = backend
        self._context: int | None = context
        self._handle: int | None = None
        self._stuck = False
        self._abandoned = False
        self._in_transaction = False
        self._protocols = _PROTOCOLS
        self._worker = _Worker(f"pcsc-card {reader}")
        self.reader = reader
        self.atr = b""
        try:
            self._call(self._open, backend.connect_timeout, "SCardConnect")
        except _TimedOut as timed_out:
            self.close()
            raise CardUnresponsive(str(timed_out)) from None
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        self._events_at_connect = self._reader_event_state()
        self._handle, self._protocol = self._connect()
        self.atr = self._status_atr()

    # -- the worker ----------------------------------------------------------------------------
    def _call(self, work: Callable[[], T], timeout: float, what: str) -> T:
        if self._stuck:
            raise CardUnresponsive(f"{self.reader}: an earlier command never returned")
        future = self._worker.submit(work)
        try:
            return future.result(timeout)
        except FutureTimeout:
            self._stuck = True
            raise _TimedOut(f"{self.reader}: {what} did not return in {timeout:.1f} s") from None

    # -- connecting ----------------------------------------------------------------------------
    def _connect(self) -> tuple[int, int]:
        """SCardConnect, with short bounded retries of what readers report for a moment.

        Right after insertion some readers say removed/unpowered; a card swap can report a
        lost link; a fast re-insert (or macOS holding the card) a sharing violation.
        """
        hresult = 0
        delays = self._backend.connect_retry_delays
        protocols = _PROTOCOLS
        for attempt in range(len(delays) + 1):
            hresult, handle, protocol = scard.SCardConnect(
                self._context, self.reader, scard.SCARD_SHARE_SHARED, protocols)
            code = _code(hresult)
            if code == scard.SCARD_E_PROTO_MISMATCH and protocols != _WITH_RAW:
                log.info("%r negotiates neither T=0 nor T=1; offering RAW", self.reader)
                protocols = _WITH_RAW
                hresult, handle, protocol = scard.SCardConnect(
                    self._context, self.reader, scard.SCARD_SHARE_SHARED, protocols)
                code = _code(hresult)
            if code == scard.SCARD_S_SUCCESS:
                self._protocols = protocols
                return handle, protocol
            if code in _TRANSIENT_CONNECT and attempt < len(delays):
                log.info("connect to %r: %s; retrying in %.2f s", self.reader,
                         scard_error_name(code), delays[attempt])
                time.sleep(delays[attempt])
                self._events_at_connect = self._reader_event_state()
                continue
            break
        raise error_for(hresult, f"SCardConnect {self.reader!r}")

    def _reconnect(self) -> None:
        hresult, protocol = scard.SCardReconnect(self._handle, scard.SCARD_SHARE_SHARED,
                                                 self._protocols, scard.SCARD_LEAVE_CARD)
        if _code(hresult) != scard.SCARD_S_SUCCESS:
            self._raise_for(hresult, "SCardReconnect")
            raise ReaderError(f"SCardReconnect {self.reader!r}: {scard_error_name(hresult)}")
        self._protocol = protocol

    def _status_atr(self) -> bytes:
        result = scard.SCardStatus(self._handle)
        if _code(result[0]) != scard.SCARD_S_SUCCESS:
            raise error_for(result[0], f"SCardStatus {self.reader!r}")
        return bytes(result[4])

    def _reader_event_state(self) -> int | None:
        hresult, states = scard.SCardGetStatusChange(
            self._context, 0, [(self.reader, scard.SCARD_STATE_UNAWARE)])
        code = _code(hresult)
        if code in _CONTEXT_DEAD:
            raise PcscUnavailable(f"SCardGetStatusChange: {scard_error_name(code)}")
        if code != scard.SCARD_S_SUCCESS or not states:
            return None
        event_state = states[0][1]
        if _gone(event_state):
            raise ReaderNotFound(self.reader)
        return int(event_state)

    # -- the transaction: one card read, exclusive ----------------------------------------
    def begin_transaction(self) -> None:
        try:
            self._call(self._begin, self._backend.connect_timeout, "SCardBeginTransaction")
        except _TimedOut as timed_out:
            # Another program held the card all that time (pcsc-lite polls for the lock).
            self._abandon()
            raise ReaderBusy(str(timed_out)) from None

    def _begin(self) -> None:
        """SCardBeginTransaction; a card reset since our connect is reconnected to first."""
        for _ in range(3):
            hresult = scard.SCardBeginTransaction(self._handle)
            code = _code(hresult)
            if code == scard.SCARD_S_SUCCESS:
                self._in_transaction = True
                return
            if code == scard.SCARD_W_RESET_CARD:
                log.info("card in %r was reset by another program; reconnecting", self.reader)
                self._reconnect()
                continue
            self._raise_for(hresult, "SCardBeginTransaction")
            raise error_for(hresult, f"SCardBeginTransaction {self.reader!r}")
        raise CardReset(f"{self.reader}: the card kept being reset before the read")

    def end_transaction(self) -> None:
        if not self._in_transaction or self._stuck or self._handle is None:
            return
        self._in_transaction = False
        try:
            self._call(self._end, self._backend.connect_timeout, "SCardEndTransaction")
        except AgentError as exc:           # the read is over either way; pcscd ends it at close
            log.info("ending the transaction on %r: %s", self.reader, exc)

    def _end(self) -> None:
        hresult = scard.SCardEndTransaction(self._handle, scard.SCARD_LEAVE_CARD)
        if _code(hresult) not in (scard.SCARD_S_SUCCESS, scard.SCARD_W_RESET_CARD):
            log.info("SCardEndTransaction on %r: %s", self.reader, scard_error_name(hresult))

    # -- talking to the card ------------------------------------------------------------------
    def _send(self, apdu: bytes) -> tuple[int, bytes]:
        hresult, response = scard.SCardTransmit(self._handle, self._protocol, list(apdu))
        return _code(hresult), bytes(response)

    def transmit(self, apdu: bytes) -> bytes:
        if self._handle is None:
            raise ReaderError("transmit on a closed channel")
        try:
            return self._call(lambda: self._transmit(apdu), self._backend.transmit_timeout,
                              "SCardTransmit")
        except _TimedOut as timed_out:
            log.warning("%s; not repeating it on that handle: reconnecting", timed_out)
            # The stuck handle holds our transaction, and pcscd makes other connects wait
            # for it: it is ended and closed as soon as its call returns, then a fresh
            # connection is tried.
            self._abandon()
            self._check_reconnect(str(timed_out))
            raise CardReset(f"{timed_out}; reconnected, reading again") from None

    def _check_reconnect(self, why: str) -> None:
        """After a timeout: a fresh connection must work, else the card is unresponsive."""
        try:
            probe = self._backend.connect(self.reader)
        except CardRemoved:
            raise
        except AgentError as exc:
            raise CardUnresponsive(f"{why}; reconnecting failed: {exc}") from None
        probe.close()

    def _transmit(self, apdu: bytes) -> bytes:
        code, response = self._send(apdu)
        if code == scard.SCARD_S_SUCCESS and len(response) >= 2:
            return response
        if code == scard.SCARD_W_RESET_CARD:
            # Another program reset the card: what we selected is gone. The read starts
            # again from the SELECT (the core does, a bounded number of times).
            raise CardReset(f"{self.reader}: the card was reset by another program")
        # A failed command (or an answer without a status word, which is how some
        # drivers report a card that vanished mid-command) gets one reconnect and retry.
        self._raise_for(code, "SCardTransmit")
        if code not in _RETRYABLE and code != scard.SCARD_S_SUCCESS:
            raise error_for(code, f"SCardTransmit {self.reader!r}")
        log.info("command failed on %r (%s); reconnecting and retrying once", self.reader,
                 _failure_name(code))
        try:
            self._reconnect()
            code, response = self._send(apdu)
            if code == scard.SCARD_S_SUCCESS and len(response) >= 2:
                return response
            if code == scard.SCARD_W_RESET_CARD:
                raise CardReset(f"{self.reader}: the card was reset by another program")
            self._raise_for(code, "SCardTransmit")
            failure: AgentError = ReaderError(f"SCardTransmit {self.reader!r}: "
                                              f"{_failure_name(code)}")
        except ReaderError as exc:          # the reconnect failed without saying why
            failure = exc
        if self._removal_follows():
            raise CardRemoved(f"{self.reader}: card left during a command") from failure
        raise failure

    def _raise_for(self, hresult: int, what: str) -> None:
        """Raise when a failure says the card, the reader or the service is gone."""
        code = _code(hresult)
        if code in _SERVICE_GONE:
            raise PcscUnavailable(f"{what}: {scard_error_name(code)}")
        if code in _CARD_GONE or code in _READER_GONE:
            raise CardRemoved(f"{self.reader}: {what}: {scard_error_name(code)}")
        status_code = _code(scard.SCardStatus(self._handle)[0])
        if status_code in _CONTEXT_DEAD:
            raise PcscUnavailable(f"{what}: {scard_error_name(status_code)}")
        if status_code in _CARD_GONE or status_code in _READER_GONE:
            raise CardRemoved(f"{self.reader}: {what}: {scard_error_name(status_code)}")
        try:
            event_state = self._reader_event_state()
        except ReaderNotFound:
            raise CardRemoved(f"{self.reader}: {what}: reader unplugged") from None
        if event_state is not None and self._card_changed(event_state):
            raise CardRemoved(f"{self.reader}: {what}: card left")

    def _card_changed(self, event_state: int) -> bool:
        """The card seen at connect is no longer there (removed, or swapped for another)."""
        start = self._events_at_connect
        return (_gone(event_state) or not event_state & scard.SCARD_STATE_PRESENT
                or (start is not None and (event_state >> _EVENT_COUNT_SHIFT)
                    != (start >> _EVENT_COUNT_SHIFT)))

    def _removal_follows(self) -> bool:
        """Wait up to ``removal_grace`` for the reader to report the card gone or swapped.

        A reader polls its slot: a card pulled mid-command fails the command at once but
        is reported a few hundred milliseconds later.
        """
        start = self._events_at_connect
        if start is None:
            return False
        deadline = time.monotonic() + self._backend.removal_grace
        current = start & ~scard.SCARD_STATE_CHANGED
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            hresult, states = scard.SCardGetStatusChange(
                self._context, int(remaining * 1000), [(self.reader, current)])
            code = _code(hresult)
            if code == scard.SCARD_E_TIMEOUT:
                return False
            if code != scard.SCARD_S_SUCCESS or not states:
                return code in _READER_GONE
            event_state = states[0][1]
            if self._card_changed(event_state):
                return True
            current = event_state & ~scard.SCARD_STATE_CHANGED

    def _abandon(self) -> None:
        """Hand the handle's release to the worker, after the call it is stuck in."""
        if not self._abandoned:
            self._abandoned = True
            self._worker.submit(self._end_and_release)
            self._worker.shutdown(wait=False)

    def _end_and_release(self) -> None:
        if self._in_transaction and self._handle is not None:
            self._in_transaction = False
            self._end()
        self._release_all()

    def close(self) -> None:
        if self._stuck:
            self._abandon()         # the worker is still blocked in PC/SC
            return
        try:
            self.end_transaction()
        finally:
            self._release_all()
            self._worker.shutdown(wait=True)

    def _release_all(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            try:
                scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
            except Exception:
                log.debug("SCardDisconnect failed", exc_info=True)
        context, self._context = self._context, None
        _release(context)


class _TimedOut(Exception):
    """A PC/SC call of a channel did not return within its timeout."""


class _Worker:
    """One daemon thread running a channel's PC/SC calls in order.

    Not a ThreadPoolExecutor: its threads are joined at interpreter exit, and a call stuck
    in a reader that never answers would then keep the agent from exiting.
    """

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, work = job
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work())
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's future
                    future.set_exception(exc)

    def submit(self, work: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, work))
        return future

    def shutdown(self, *, wait: bool) -> None:
        self._jobs.put(None)
        if wait:
            self._thread.join()
