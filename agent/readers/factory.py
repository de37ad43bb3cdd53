"""Choosing the reader backend: real PC/SC, the demo reader, or PC/SC with a demo fallback."""

from __future__ import annotations

import logging

from ..config import BACKENDS
from ..errors import PcscUnavailable
from .base import ReaderBackend

log = logging.getLogger(__name__)



def make_backend(kind: str = "pcsc", *, apdu_delay: float = 0.0) -> ReaderBackend:
    """``auto`` uses PC/SC when its service runs with a reader attached, else the demo reader.

    Installed agents use ``pcsc``: staff must never be shown a demo card by accident.
    """
    if kind == "demo":
        from .demo import DemoBackend

        return DemoBackend(apdu_delay=apdu_delay)
    if kind == "pcsc":
        return _pcsc()
    if kind != "auto":
        raise ValueError(f"unknown backend {kind!r}; choose from {', '.join(BACKENDS)}")
    try:
        backend = _pcsc()
        if backend.snapshot():
            return backend
        backend.close()
        reason = "no reader is attached"
    except PcscUnavailable as exc:
        reason = f"the PC/SC service is not available ({exc})"
    log.warning("Using the demo reader: %s.", reason)
    from .demo import DemoBackend

    return DemoBackend(apdu_delay=apdu_delay)


def _pcsc() -> ReaderBackend:
    try:
        from .pcsc import PcscBackend  # the only place pyscard enters, and only when asked
    except ImportError as exc:
        raise PcscUnavailable(f"pyscard cannot be loaded: {exc}") from exc
    return PcscBackend()
