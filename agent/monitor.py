"""The reader monitor: one thread that blocks on the backend and reports what changed.

It owns the backend's wait (``SCardGetStatusChange`` for PC/SC): no polling. When the
service goes away it reports ``pcsc_unavailable`` plus the removal of every reader, then
retries with backoff until the service is back and the readers are picked up again.
Exceptions never kill the thread: they become ``monitor_error`` events.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .errors import AgentError, PcscUnavailable
from .readers.base import ReaderBackend, ReaderEvent, ReaderState, diff_states

log = logging.getLogger(__name__)

EventSink = Callable[[ReaderEvent], None]
_CANCEL_REPEAT_S = 0.1


class ReaderMonitor:
    def __init__(self, backend: ReaderBackend, on_event: EventSink, *,
                 backoff: tuple[float, float] = (0.25, 5.0)) -> None:
        self.backend = backend
        self._on_event = on_event
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.states: list[ReaderState] = []
        self.available: bool | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="reader-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        while True:
            # A cancel that lands just before the thread enters its blocking wait is lost
            # (SCardCancel only wakes a wait in progress), so it is repeated until the
            # thread has gone.
            try:
                self.backend.cancel()
            except Exception:
                log.debug("cancel failed", exc_info=True)
            remaining = deadline - time.monotonic()
            if self._thread is None or remaining <= 0:
                break
            self._thread.join(min(_CANCEL_REPEAT_S, remaining))
            if not self._thread.is_alive():
                break

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _emit(self, event: ReaderEvent) -> None:
        try:
            self._on_event(event)
        except Exception:
            log.exception("event sink failed for %s", event.kind)

    def _set_available(self, available: bool, code: str = "", detail: str = "") -> None:
        if self.available is available:
            return
        self.available = available
        self._emit(ReaderEvent("pcsc_available" if available else "pcsc_unavailable",
                               error=code, detail=detail))

    def _unusable(self, code: str, detail: str) -> None:
        """No look at the readers was possible: report it, with the reason, as unavailable."""
        self._set_available(False, code, detail)
        self._apply([])
        self._emit(ReaderEvent("scanned"))

    def _apply(self, new: list[ReaderState]) -> None:
        for event in diff_states(self.states, new):
            self._emit(event)
        self.states = new

    def _run(self) -> None:
        delay = self._backoff[0]
        fresh = True
        while not self._stop.is_set():
            try:
                if fresh:
                    new = self.backend.snapshot()
                else:
                    new = self.backend.wait_for_change(self.states, None)
                if self._stop.is_set():
                    break
                self._set_available(True)
                self._apply(new)
                if fresh:
                    self._emit(ReaderEvent("scanned"))
                fresh = False
                delay = self._backoff[0]
                continue
            except PcscUnavailable as exc:
                log.warning("PC/SC unavailable: %s", exc)
                self._unusable(exc.code, str(exc))
            except AgentError as exc:
                log.warning("reader monitor: %s", exc)
                self._emit(ReaderEvent("monitor_error", error=exc.code))
                if fresh:
                    # Not even the readers could be listed (a broken or stub PC/SC, such as
                    # Wine's): "starting" would be shown for ever without a reason.
                    log.warning("PC/SC unavailable: %s", exc)
                    self._unusable(exc.code, str(exc))
            except Exception as exc:
                log.exception("reader monitor failed; retrying")
                self._emit(ReaderEvent("monitor_error", error="internal_error"))
                if fresh:
                    self._unusable("internal_error", f"{type(exc).__name__}: {exc}")
            fresh = True
            self._stop.wait(delay)
            delay = min(delay * 2, self._backoff[1])
