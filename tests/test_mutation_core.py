"""CardService's public answers, exactly: the reader list (``/v1/readers`` shows it as is),
a failed read, and the state before the first scan.

Added where mutation testing (scripts/mutation.sh) showed agent/core.py could change
unnoticed; only public methods are used (the module is being reshaped).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from agent.card.demo import demo_profile
from agent.card.encode import encode_card
from agent.card.simulator import ATR_NOT_THAI, SimulatedCard
from agent.core import CardService
from agent.errors import NotThaiIdCard, PcscUnavailable
from agent.readers.base import ReaderEvent
from agent.readers.demo import DEMO_READER, DemoBackend, demo_card
from tests.core_support import next_event

SECOND = "Demo Reader 1"


@pytest.fixture
async def service() -> AsyncIterator[tuple[CardService, DemoBackend]]:
    backend = DemoBackend((DEMO_READER, SECOND), apdu_delay=0.0)
    svc = CardService(backend)
    await svc.start()
    yield svc, backend
    await svc.stop()


async def test_reader_list_is_exact(service: tuple[CardService, DemoBackend]) -> None:
    svc, backend = service
    await svc.get_card(DEMO_READER, photo=True)
    card = demo_card(0)
    atr = card.atr.hex(" ").upper()
    first, second = svc.readers()
    assert first == {"name": DEMO_READER, "present": True, "status": "ready", "atr": atr,
                     "generation": first["generation"], "photo": True, "error": None}
    assert isinstance(first["generation"], str)
    assert second == {"name": SECOND, "present": False, "status": "empty", "atr": None,
                      "generation": None, "photo": False, "error": None}


async def test_a_card_that_is_not_a_thai_id(service: tuple[CardService, DemoBackend]) -> None:
    svc, backend = service
    sub = svc.events.subscribe()
    backend.insert(SECOND, SimulatedCard(encode_card(demo_profile(0)), atr=ATR_NOT_THAI,
                                         is_thai_id=False))
    error = await next_event(sub, "card.error", SECOND)
    assert error.payload["code"] == "not_thai_id"
    info = {r["name"]: r for r in svc.readers()}[SECOND]
    assert (info["present"], info["status"], info["photo"]) == (True, "error", False)
    assert info["error"]["code"] == "not_thai_id"
    with pytest.raises(NotThaiIdCard):
        await svc.get_card(SECOND)
    # Asked again, it is not read again: the same card cannot become a Thai id.
    with pytest.raises(NotThaiIdCard):
        await svc.get_card(SECOND, photo=True)


async def test_before_the_first_scan() -> None:
    backend: Any = DemoBackend((), apdu_delay=0.0)
    svc = CardService(backend)
    assert svc.pcsc_state() == "starting" and svc.readers() == [] and svc.reads == 0
    svc._on_reader_event(ReaderEvent("pcsc_unavailable", error="pcscd is not running"))
    with pytest.raises(PcscUnavailable) as caught:
        svc.choose_reader()
    assert caught.value.detail == "pcscd is not running"
    assert svc.pcsc_state() == "unavailable"
