"""CardService's public answers, exactly: the reader list (``/v1/readers`` shows it as is),
a failed read, and the state before the first scan.

Added where mutation testing (scripts/mutation.sh) showed agent/core.py could change
unnoticed. Public methods, except two seams: the read's task (found by its name, to see it
cancelled on removal) and ``_Restarts`` with a recorded sleep (its pauses, not a clock).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import threading
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest

from agent.card import layout as L
from agent.card.demo import demo_profile
from agent.card.encode import encode_card, encode_nhso
from agent.card.simulator import ATR_NOT_THAI, SimulatedCard
from agent.card.values import CardDate, CardProfile, NhsoCoverage
from agent.core import (
    CardService,
    list_readers,
    open_backend,
    pick_reader,
    read_applets,
    read_exclusive,
    read_once,
)
from agent.errors import (
    ApduFailed,
    CardRemoved,
    NoCard,
    NotFound,
    NotThaiIdCard,
    PcscUnavailable,
    ReaderNotFound,
    ReadTimeout,
)
from agent.events import EventBus
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


# -- added with the second mutation run: the photo still coming, the opt-in applets on
# request, demo controls, one-shot reads, and the restarts' pauses (on a recorded sleep) ---

LASER_RECORD = bytes(range(1, 8)) + b"ME0123456789" + bytes(4)   # docs/reference.md: id at 7-22
COVERAGE = NhsoCoverage("UCS", "89", "10699", "10699", "1", CardDate("25660101"),
                        CardDate("25700101"), CardDate("25660101"), "0")


class GatedBackend(DemoBackend):
    """The demo reader, whose photo reads wait until the test opens ``gate``.

    The wait is outside the backend's lock, so insertions and removals go on meanwhile.
    """

    def __init__(self, *readers: str) -> None:
        super().__init__(readers, insert_demo_card=False)
        self.gate = threading.Event()
        self.photo_asked = threading.Event()

    def connect(self, reader: str) -> Any:
        channel = super().connect(reader)
        real = channel.transmit

        def transmit(apdu: bytes) -> bytes:
            offset = apdu[2] << 8 | apdu[3]
            if apdu[:2] == b"\x80\xb0" and L.PHOTO.offset <= offset < L.PHOTO.end:
                self.photo_asked.set()
                assert self.gate.wait(30), "the test never opened the gate"
            return real(apdu)

        channel.transmit = transmit  # type: ignore[method-assign]  # the gate in front
        return channel


@pytest.fixture
async def gated() -> AsyncIterator[tuple[CardService, GatedBackend]]:
    backend = GatedBackend(DEMO_READER)
    # A long read timeout: a caller's own timeout must be the one that applies.
    svc = CardService(backend, read_timeout=600)
    await svc.start()
    yield svc, backend
    backend.gate.set()
    await svc.stop()


async def test_text_is_served_while_the_photo_is_still_coming(
        gated: tuple[CardService, GatedBackend]) -> None:
    svc, backend = gated
    sub = svc.events.subscribe()
    backend.insert(DEMO_READER, demo_card(0))
    read = await next_event(sub, "card.read", DEMO_READER)
    assert read.payload["photo_pending"] is True
    view, card = await asyncio.wait_for(svc.get_card(), 10)       # text only, by default
    assert card.photo is None and card.text == demo_profile(0).text
    assert (view.name, view.present, view.status) == (DEMO_READER, True, "reading")
    assert isinstance(view.read_at, dt.datetime) and view.read_at.tzinfo is not None
    info = svc.readers()[0]
    assert (info["status"], info["photo"], info["error"]) == ("reading", False, None)
    with pytest.raises(ReadTimeout) as err:
        await asyncio.wait_for(svc.get_card(photo=True, timeout=0.05), 10)
    assert err.value.detail == DEMO_READER
    assert svc.reads == 0
    backend.gate.set()
    photo = await next_event(sub, "card.photo", DEMO_READER)
    assert photo.payload["photo"] == base64.b64encode(demo_profile(0).photo).decode()
    assert photo.payload["size"] == len(demo_profile(0).photo)
    assert photo.payload["format"] == "image/jpeg"
    view, card = await svc.get_card(photo=True)
    assert card.photo == demo_profile(0).photo and view.status == "ready" and svc.reads == 1
    (with_card,) = svc.readers_with_cards()
    assert with_card["card"]["photo"]["base64"] == photo.payload["photo"]
    assert "base64" not in svc.readers_with_cards(photo=False)[0]["card"]["photo"]
    assert svc.readers_with_cards(["Other"]) == []


async def test_a_removal_while_the_photo_is_read_cancels_the_read(
        gated: tuple[CardService, GatedBackend]) -> None:
    svc, backend = gated
    sub = svc.events.subscribe()
    backend.insert(DEMO_READER, demo_card(0))
    await next_event(sub, "card.read", DEMO_READER)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"read {DEMO_READER}"]
    waiter = asyncio.ensure_future(svc.get_card(photo=True))
    backend.remove(DEMO_READER)
    await next_event(sub, "card.removed", DEMO_READER)
    with pytest.raises(CardRemoved):
        await waiter
    assert task.cancelling() or task.done()        # not left to run out on its own
    info = svc.readers()[0]
    assert (info["present"], info["status"], info["atr"], info["photo"]) == \
        (False, "empty", None, False)
    with pytest.raises(NoCard) as err:
        await svc.get_card()
    assert err.value.detail == DEMO_READER


async def test_a_photo_that_is_not_a_jpeg_is_reported(service: tuple[CardService,
                                                                     DemoBackend]) -> None:
    svc, backend = service
    sub = svc.events.subscribe()
    profile = demo_profile(0)
    backend.insert(SECOND, SimulatedCard(encode_card(CardProfile(profile.text, b"no jpeg"))))
    event = await next_event(sub, "card.photo", SECOND)
    assert event.payload["photo"] is None
    assert event.payload["error"]["code"] == "card_data_invalid"
    info = {r["name"]: r for r in svc.readers()}[SECOND]
    assert (info["status"], info["photo"]) == ("ready", False)


async def test_opt_in_applets_are_read_once_each_and_shown_only_to_who_asked(
        service: tuple[CardService, DemoBackend]) -> None:
    svc, backend = service
    sub = svc.events.subscribe()
    card = SimulatedCard(encode_card(demo_profile(0)), nhso_image=encode_nhso(COVERAGE),
                         laser_answer=LASER_RECORD)
    backend.insert(SECOND, card)
    await next_event(sub, "card.photo", SECOND)
    before = card.apdus
    _, got = await svc.get_card(SECOND, nhso=True)
    # select + two reads of the 0x015A-byte block (two APDUs each)
    assert card.apdus - before == 5
    assert got.nhso == COVERAGE and got.laser_id is None and got.photo is not None
    shown = got.to_json()
    assert shown["nhso_applet"]["main_inscl"] == "UCS" and "laser_id" not in shown
    _, again = await svc.get_card(SECOND, nhso=True)
    assert card.apdus - before == 5 and again.nhso == COVERAGE       # not read twice
    _, laser = await svc.get_card(SECOND, laser=True)
    assert card.apdus - before == 5 + 3          # select, the header-alone form, its fetch
    assert laser.laser_id == "ME0123456789" and laser.laser_command == bytes.fromhex("80000000")
    assert laser.laser_error is None
    assert laser.nhso is None and "nhso_applet" not in laser.to_json()
    _, nhso_again = await svc.get_card(SECOND, nhso=True)       # the laser is not shown
    assert nhso_again.nhso == COVERAGE and nhso_again.laser_id is None
    assert "laser_id" not in nhso_again.to_json()
    _, both = await svc.get_card(SECOND, nhso=True, laser=True)
    assert card.apdus - before == 8 and both.nhso == COVERAGE and both.laser_id == "ME0123456789"
    _, plain = await svc.get_card(SECOND)
    assert plain.nhso is None and not plain.nhso_asked and plain.laser_id is None
    assert "nhso_applet" not in plain.to_json() and "laser_id" not in plain.to_json()
    # A new insertion forgets them: asked again, they are read again.
    backend.remove(SECOND)
    await next_event(sub, "card.removed", SECOND)
    backend.insert(SECOND, card)
    await next_event(sub, "card.photo", SECOND)
    before = card.apdus
    _, fresh = await svc.get_card(SECOND, nhso=True, laser=True)
    assert card.apdus - before == 8 and fresh.nhso == COVERAGE


async def test_applets_a_card_does_not_have(service: tuple[CardService, DemoBackend]) -> None:
    svc, _ = service
    _, got = await svc.get_card(DEMO_READER, nhso=True, laser=True)
    assert got.nhso is None and got.nhso_asked and got.laser_id is None
    assert got.laser_error is not None and got.laser_error.code == "laser_unavailable"
    assert got.to_json()["nhso_applet"] is None


async def test_demo_controls(service: tuple[CardService, DemoBackend]) -> None:
    svc, backend = service
    sub = svc.events.subscribe()
    assert svc.demo and svc.demo_card_present() is True
    assert svc.demo_insert(SECOND, variant=7) == SECOND
    await next_event(sub, "card.read", SECOND)
    _, card = await svc.get_card(SECOND)
    assert card.text == demo_profile(7).text
    for bad in (-1, 100):
        with pytest.raises(ValueError, match="variant must be 0-99"):
            svc.demo_insert(SECOND, variant=bad)
    assert svc.demo_insert(SECOND, variant=99) == SECOND
    await next_event(sub, "card.read", SECOND)
    assert (await svc.get_card(SECOND))[1].text == demo_profile(99).text
    assert svc.demo_remove(SECOND) == SECOND
    await next_event(sub, "card.removed", SECOND)
    assert svc.demo_remove() == DEMO_READER               # the one with a card
    await next_event(sub, "card.removed", DEMO_READER)
    assert svc.demo_card_present() is False
    assert svc.demo_insert() == DEMO_READER               # the first reader, demo card 0
    await next_event(sub, "card.read", DEMO_READER)
    assert (await svc.get_card())[1].text == demo_profile(0).text
    assert svc.choose_reader(SECOND).name == SECOND


async def test_demo_controls_say_why_not(service: tuple[CardService, DemoBackend]) -> None:
    from agent.readers.base import ReaderBackend

    class NotDemo(ReaderBackend):
        kind = "pcsc"

        def snapshot(self) -> list[Any]:
            return []

        def wait_for_change(self, known: Any, timeout: Any = None) -> list[Any]:
            return []

        def cancel(self) -> None:
            pass

        def connect(self, reader: str) -> Any:
            raise AssertionError

    svc = CardService(NotDemo())
    for control in (svc.demo_insert, svc.demo_remove):
        with pytest.raises(NotFound) as err:
            control()
        assert err.value.detail == "only in demo mode"


async def test_status_is_exact(service: tuple[CardService, DemoBackend]) -> None:
    svc, _ = service
    await svc.get_card(photo=True)
    status = svc.status()
    assert set(status) == {"backend", "pcsc", "readers", "reads", "uptime_s"}
    assert status["backend"] == "demo"
    assert status["pcsc"] == {"state": "available", "error": None, "detail": None}
    assert status["readers"] == svc.readers() and status["reads"] == 1
    assert isinstance(status["uptime_s"], float) and 0 <= status["uptime_s"] < 3600


def test_reader_not_found_names_the_reader() -> None:
    with pytest.raises(ReaderNotFound) as err:
        pick_reader([("A", False)], "B")
    assert err.value.detail == "B"


def test_one_shot_read_and_reader_list() -> None:
    backend = DemoBackend((DEMO_READER, SECOND), insert_demo_card=False)
    backend.insert(SECOND, demo_card(3))
    assert [(s.name, s.present) for s in list_readers(backend)] == \
        [(DEMO_READER, False), (SECOND, True)]
    name, card = read_once(backend)                 # the one with a card
    assert name == SECOND and card.text == demo_profile(3).text and card.photo is not None
    name, card = read_once(backend, SECOND, photo=False, nhso=True, laser=True)
    assert card.photo is None and card.nhso_asked and card.laser_error is not None
    with pytest.raises(NoCard) as err:
        read_once(backend, DEMO_READER)
    assert err.value.detail == DEMO_READER
    applets = read_applets(backend, SECOND, nhso=True, laser=True)
    assert applets.nhso_asked and applets.laser_asked and applets.nhso is None
    assert open_backend("demo").kind == "demo"


def test_restarts_pause_longer_each_time_and_name_the_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.core as core
    from agent.errors import CardReset, ReadInterrupted

    pauses: list[float] = []
    monkeypatch.setattr(core, "time", SimpleNamespace(sleep=pauses.append))
    restarts = core._Restarts("R")
    for _ in range(core.MAX_RESTARTS):
        restarts.after(CardReset("reset by another program"))
    assert pauses == pytest.approx([0.05, 0.10, 0.15, 0.20])
    with pytest.raises(ReadInterrupted) as err:
        restarts.after(CardReset("reset by another program"))
    assert err.value.detail == "R: reset by another program (5 tries)"
    assert len(pauses) == 4                         # no pause before giving up


async def test_reader_and_card_events_carry_what_they_say() -> None:
    backend = DemoBackend((DEMO_READER,), insert_demo_card=False)
    svc = CardService(backend)
    await svc.start()
    try:
        sub = svc.events.subscribe()
        backend.add_reader(SECOND)
        added = await next_event(sub, "reader.added", SECOND)
        assert added.payload["readers"] == [DEMO_READER, SECOND]
        card = demo_card(0)
        backend.insert(SECOND, card)
        inserted = await next_event(sub, "card.inserted", SECOND)
        assert inserted.payload["atr"] == card.atr.hex(" ").upper()
        await next_event(sub, "card.photo", SECOND)
        backend.remove_reader(SECOND)
        removed = await next_event(sub, "reader.removed", SECOND)
        assert removed.payload["readers"] == [DEMO_READER] and svc.reader_names() == [DEMO_READER]
        # A removal for a reader without a card (or unknown) changes nothing and says nothing.
        svc._on_reader_event(ReaderEvent("card_removed", DEMO_READER))
        svc._on_reader_event(ReaderEvent("card_removed", "Nowhere"))
        svc.events.publish("reader.error", None, code="marker")
        marker = await sub.get()
        assert marker is not None and marker.payload["code"] == "marker"
        # A reader that reports a card without an ATR.
        svc._on_reader_event(ReaderEvent("card_inserted", DEMO_READER, atr=None))
        assert (await next_event(sub, "card.inserted", DEMO_READER)).payload["atr"] is None
    finally:
        await svc.stop()


class RefusingPhoto(SimulatedCard):
    """A card that refuses every read of its photo (6982): not a data error, a failure."""

    def process(self, apdu: bytes) -> bytes:
        offset = (apdu[2] << 8 | apdu[3]) if len(apdu) >= 4 else 0
        if apdu[:2] == b"\x80\xb0" and L.PHOTO.offset <= offset < L.PHOTO.end:
            return b"\x69\x82"
        return super().process(apdu)


async def test_a_read_that_fails_after_the_text_ends_every_waiter(
        gated: tuple[CardService, GatedBackend]) -> None:
    svc, backend = gated
    sub = svc.events.subscribe()
    backend.insert(DEMO_READER, RefusingPhoto(encode_card(demo_profile(0))))
    await next_event(sub, "card.read", DEMO_READER)
    waiter = asyncio.ensure_future(svc.get_card(DEMO_READER, photo=True, timeout=5))
    backend.gate.set()
    failed = await next_event(sub, "card.error", DEMO_READER)
    assert failed.payload["code"] == "apdu_failed"
    with pytest.raises(ApduFailed):
        await waiter
    info = svc.readers()[0]
    assert (info["status"], info["error"]["code"]) == ("error", "apdu_failed")


async def test_an_unexpected_failure_is_an_internal_error_named_by_its_type() -> None:
    class Broken(DemoBackend):
        def connect(self, reader: str) -> Any:
            raise ZeroDivisionError("a bug")

    backend = Broken((DEMO_READER,), insert_demo_card=False)
    svc = CardService(backend)
    await svc.start()
    try:
        sub = svc.events.subscribe()
        backend.insert(DEMO_READER, demo_card(0))
        failed = await next_event(sub, "card.error", DEMO_READER)
        assert (failed.payload["code"], failed.payload["detail"]) == \
            ("internal_error", "ZeroDivisionError")
    finally:
        await svc.stop()


def test_uptime_in_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.core as core

    svc = CardService(DemoBackend((), insert_demo_card=False))
    svc.started_at = 990.0
    monkeypatch.setattr(core, "time", SimpleNamespace(monotonic=lambda: 1000.1234))
    assert svc.status()["uptime_s"] == 10.1


async def test_start_does_not_wait_forever_for_a_first_scan(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.core as core

    class Silent(DemoBackend):
        release = threading.Event()

        def snapshot(self) -> list[Any]:
            self.release.wait(30)                  # the first scan never comes in time
            return []

    backend = Silent((), insert_demo_card=False)
    monkeypatch.setattr(core, "FIRST_SCAN_TIMEOUT", 0.05)
    svc = CardService(backend)
    await asyncio.wait_for(svc.start(), 10)
    assert svc.pcsc_state() == "starting"
    backend.release.set()
    await svc.stop()


async def test_reads_are_counted_per_insertion(service: tuple[CardService, DemoBackend]) -> None:
    svc, backend = service
    sub = svc.events.subscribe()
    await svc.get_card(photo=True)
    backend.insert(SECOND, demo_card(1))
    await next_event(sub, "card.photo", SECOND)
    await svc.get_card(SECOND, photo=True)
    assert svc.reads == 2


class NoAtrChannel(DemoBackend):
    """A reader whose connection does not report the ATR: the reader state's ATR is used."""

    def connect(self, reader: str) -> Any:
        channel = super().connect(reader)
        channel.atr = None  # type: ignore[assignment]  # as a reader that does not say
        return channel


def test_one_shot_reads_use_the_reader_states_atr_and_ask_only_for_what_is_named() -> None:
    from agent.card.simulator import ATR_3B67

    backend = NoAtrChannel((DEMO_READER,), insert_demo_card=False)
    card = SimulatedCard(encode_card(demo_profile(0)), atr=ATR_3B67,
                         nhso_image=encode_nhso(COVERAGE), laser_answer=LASER_RECORD)
    backend.insert(DEMO_READER, card)
    sent: list[bytes] = []
    real = card.process

    def process(apdu: bytes) -> bytes:
        sent.append(apdu)
        return real(apdu)

    card.process = process  # type: ignore[method-assign]  # records what the agent sends
    _, read = read_once(backend)
    # A 3B 67 card wants P2 01 (docs/reference.md): known from the state, never probed.
    assert {c[3] for c in sent if c[:2] == b"\x00\xc0"} == {0x01}
    assert not read.nhso_asked and read.laser_id is None and read.laser_error is None
    sent.clear()
    nhso_only = read_applets(backend, DEMO_READER, ATR_3B67, nhso=True)
    assert nhso_only.nhso == COVERAGE and not nhso_only.laser_asked
    assert {c[3] for c in sent if c[:2] == b"\x00\xc0"} == {0x01}
    laser_only = read_applets(backend, DEMO_READER, laser=True)
    assert laser_only.laser_id == "ME0123456789" and not laser_only.nhso_asked


class Resetting(DemoBackend):
    """A card that another program resets at every command."""

    def connect(self, reader: str) -> Any:
        from agent.errors import CardReset

        channel = super().connect(reader)

        def transmit(apdu: bytes) -> bytes:
            raise CardReset("reset by another program")

        channel.transmit = transmit  # type: ignore[method-assign]  # resets every command
        return channel


def test_applet_reads_restart_after_resets_then_give_up_naming_the_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.core as core
    from agent.errors import ReadInterrupted

    monkeypatch.setattr(core, "time", SimpleNamespace(sleep=lambda s: None))
    backend = Resetting((DEMO_READER,))
    with pytest.raises(ReadInterrupted) as err:
        read_applets(backend, DEMO_READER, nhso=True)
    assert err.value.detail == f"{DEMO_READER}: reset by another program (5 tries)"


def test_the_default_backend_is_pcsc() -> None:
    backend = open_backend()
    try:
        assert backend.kind == "pcsc"
    finally:
        backend.close()


async def test_stop_ends_the_monitor_and_the_reads_in_progress(
        gated: tuple[CardService, GatedBackend]) -> None:
    svc, backend = gated
    sub = svc.events.subscribe()
    backend.insert(DEMO_READER, demo_card(0))
    await next_event(sub, "card.read", DEMO_READER)
    monitors = {t for t in threading.enumerate() if t.name == "reader-monitor"}
    assert monitors                                # ours (others' tests may have left theirs)
    (task,) = [t for t in asyncio.all_tasks() if t.get_name() == f"read {DEMO_READER}"]
    await svc.stop()
    assert task.done()                             # awaited, not left cancelling
    assert {t for t in threading.enumerate() if t.name == "reader-monitor"} < monitors


async def test_applets_on_request_use_the_reader_states_atr() -> None:
    from agent.card.simulator import ATR_3B67

    backend = NoAtrChannel((DEMO_READER,), insert_demo_card=False)
    svc = CardService(backend)
    await svc.start()
    try:
        sub = svc.events.subscribe()
        card = SimulatedCard(encode_card(demo_profile(0)), atr=ATR_3B67,
                             nhso_image=encode_nhso(COVERAGE))
        sent: list[bytes] = []
        real = card.process

        def process(apdu: bytes) -> bytes:
            sent.append(apdu)
            return real(apdu)

        card.process = process  # type: ignore[method-assign]  # records what the agent sends
        backend.insert(DEMO_READER, card)
        await next_event(sub, "card.photo", DEMO_READER)
        assert {c[3] for c in sent if c[:2] == b"\x00\xc0"} == {0x01}     # the card's read too
        sent.clear()
        _, got = await svc.get_card(nhso=True)
        assert got.nhso == COVERAGE
        assert {c[3] for c in sent if c[:2] == b"\x00\xc0"} == {0x01}     # never probed
    finally:
        await svc.stop()


async def test_a_failed_read_is_tried_again_when_asked(
        service: tuple[CardService, DemoBackend]) -> None:
    svc, backend = service
    sub = svc.events.subscribe()
    card = RefusingPhoto(encode_card(demo_profile(0)))
    backend.insert(SECOND, card)
    await next_event(sub, "card.error", SECOND)
    card.process = super(RefusingPhoto, card).process  # type: ignore[method-assign]  # mended
    _, read = await svc.get_card(SECOND, photo=True)    # not the old error: a new read
    assert read.photo == demo_profile(0).photo
    assert {r["name"]: r for r in svc.readers()}[SECOND]["status"] == "ready"


async def test_a_service_without_photos_reads_none() -> None:
    backend = DemoBackend((DEMO_READER,), insert_demo_card=False)
    svc = CardService(backend, read_photo=False)
    await svc.start()
    try:
        sub = svc.events.subscribe()
        card = demo_card(0)
        backend.insert(DEMO_READER, card)
        read = await next_event(sub, "card.read", DEMO_READER)
        assert read.payload["photo_pending"] is False
        _, got = await svc.get_card(photo=True)       # asked, but this service reads none
        assert got.photo is None and got.photo_error is None
        deadline = asyncio.get_running_loop().time() + 10
        while svc.reads < 1:                             # the read has ended, not only its text
            assert asyncio.get_running_loop().time() < deadline, "the read never ended"
            await asyncio.sleep(0.01)
        assert card.apdus == 7                           # select, text, address: no photo
    finally:
        await svc.stop()


async def test_pcsc_and_monitor_events_and_a_service_never_started() -> None:
    bus = EventBus()
    svc = CardService(DemoBackend((), insert_demo_card=False), events=bus)
    assert svc.events is bus                                   # the application's bus
    assert svc.status()["pcsc"] == {"state": "starting", "error": None,
                                      "detail": None}
    sub = bus.subscribe()
    svc._on_reader_event(ReaderEvent("pcsc_unavailable", error="pcsc_unavailable",
                                     detail="SCardEstablishContext: 0x80100001"))
    # /v1/status says why PC/SC cannot be used: the failing call and its result.
    assert svc.status()["pcsc"] == {"state": "unavailable", "error": "pcsc_unavailable",
                                      "detail": "SCardEstablishContext: 0x80100001"}
    svc._on_reader_event(ReaderEvent("pcsc_available"))
    assert svc.status()["pcsc"] == {"state": "available", "error": None, "detail": None}
    svc._on_reader_event(ReaderEvent("monitor_error", error="reader_error"))
    svc._on_reader_event(ReaderEvent("monitor_error"))
    seen = [await sub.get() for _ in range(4)]
    assert [(e.type, e.reader, e.payload.get("code")) for e in seen if e is not None] == [
        ("pcsc.unavailable", None, "pcsc_unavailable"), ("pcsc.available", None, None),
        ("reader.error", None, "reader_error"), ("reader.error", None, "internal_error")]
    await svc.stop()                                           # never started: nothing to end


def test_card_reads_that_keep_being_reset_give_up_naming_the_reader(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-shot read (the ``read`` command) and the resident service's read say which
    reader was being read when other programs' resets made it give up."""
    import agent.core as core
    from agent.errors import ReadInterrupted

    monkeypatch.setattr(core, "time", SimpleNamespace(sleep=lambda s: None))
    with pytest.raises(ReadInterrupted) as err:
        read_once(Resetting((SECOND,)), SECOND)
    assert err.value.detail == f"{SECOND}: reset by another program (5 tries)"


def test_a_one_shot_read_reads_photo_and_address_as_one_span() -> None:
    """No one waits for the text first in a one-shot read, so a card that does not state its
    photo's length is read with the fewest commands (the address rides with the photo)."""
    from dataclasses import replace

    from agent.card.session import read_card

    demo = demo_profile(0)
    image = encode_card(CardProfile(replace(demo.text, photo_length=0), demo.photo))
    fewest = read_card(SimulatedCard(image).process, SimulatedCard(image).atr).stats.apdus
    backend = DemoBackend((DEMO_READER,), insert_demo_card=False)
    card = SimulatedCard(image)
    backend.insert(DEMO_READER, card)
    _, read = read_once(backend)
    assert read.photo == demo.photo and read.text.address == demo.text.address
    assert card.apdus == read.stats.apdus == fewest


def test_a_reader_that_reports_no_atr_shows_none() -> None:
    """Neither the connection nor the caller knows the ATR: the read says it is empty rather
    than showing made-up bytes."""
    backend = NoAtrChannel((DEMO_READER,), insert_demo_card=False)
    backend.insert(DEMO_READER, demo_card(0))
    read = read_exclusive(backend, DEMO_READER, photo=False)
    assert read.atr == b"" and read.text == demo_profile(0).text


async def test_a_card_pulled_during_an_applet_read_names_its_reader(
        service: tuple[CardService, DemoBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """The applet read runs in a thread; a card pulled meanwhile is refused with the
    reader's name (the page shows which reader lost its card), not its half-read applet."""
    import agent.core as core_module

    svc, backend = service
    sub = svc.events.subscribe()
    card = SimulatedCard(encode_card(demo_profile(0)), nhso_image=encode_nhso(COVERAGE))
    backend.insert(SECOND, card)
    await next_event(sub, "card.photo", SECOND)
    real = core_module.read_applets
    loop = asyncio.get_running_loop()

    def pulled_while_reading(*args: Any, **kwargs: Any) -> Any:
        got = real(*args, **kwargs)
        # The pull is handled on the loop, which is free while this thread reads.
        asyncio.run_coroutine_threadsafe(pull(), loop).result(30)
        return got

    async def pull() -> None:
        backend.remove(SECOND)
        await next_event(sub, "card.removed", SECOND)

    monkeypatch.setattr(core_module, "read_applets", pulled_while_reading)
    with pytest.raises(CardRemoved) as caught:
        await svc.get_card(SECOND, nhso=True)
    assert caught.value.detail == SECOND


async def test_a_card_pulled_as_its_text_is_handed_over_is_never_shown(
        service: tuple[CardService, DemoBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """The read's thread hands the text to the loop; when the card was pulled (and the
    removal handled) first, that text belongs to a card no longer there: not stored, not
    published. The pull is made to land exactly between the two."""
    import agent.core as core_module

    svc, backend = service
    sub = svc.events.subscribe()
    loop = asyncio.get_running_loop()
    real = core_module.read_exclusive
    pulls = svc.events.subscribe()

    async def pull() -> None:
        backend.remove(SECOND)
        await next_event(pulls, "card.removed", SECOND)

    def pulled_before_the_hand_off(*args: Any, on_text: Any = None, **kwargs: Any) -> Any:
        def hand(card: Any) -> None:
            asyncio.run_coroutine_threadsafe(pull(), loop).result(30)
            on_text(card)                  # schedules the hand-off, now after the removal
        return real(*args, on_text=hand if on_text else None, **kwargs)

    monkeypatch.setattr(core_module, "read_exclusive", pulled_before_the_hand_off)
    seen: list[tuple[str, Any]] = []
    svc.events.add_listener(lambda ev: seen.append(
        (ev.type, (ev.payload.get("card") or {}).get("citizen_id"))) if ev.reader == SECOND
        else None)
    backend.insert(SECOND, demo_card(0))
    await next_event(sub, "card.removed", SECOND)
    # Whatever the stopped read's thread still schedules has run by the time a fresh
    # insertion (no hook: the reader's next card) is read.
    monkeypatch.setattr(core_module, "read_exclusive", real)
    backend.insert(SECOND, demo_card(1))
    await next_event(sub, "card.photo", SECOND)
    reads = [cid for kind, cid in seen if kind == "card.read"]
    assert reads == [demo_profile(1).text.citizen_id], seen
    _, card = await svc.get_card(SECOND)
    assert card.text == demo_profile(1).text


async def test_an_nhso_request_waits_for_the_photo_before_reading_the_applet(
        gated: tuple[CardService, GatedBackend], monkeypatch: pytest.MonkeyPatch) -> None:
    """The card's own read (text, then photo) goes first; the applet is read after it, on
    the same card, never interleaved with the photo."""
    import agent.core as core_module

    svc, backend = gated
    sub = svc.events.subscribe()
    loop = asyncio.get_running_loop()
    real = core_module.read_applets
    called = asyncio.Event()
    photo_at_call: list[bool] = []

    def recording(*args: Any, **kwargs: Any) -> Any:
        photo_at_call.append(svc.readers()[0]["photo"])
        loop.call_soon_threadsafe(called.set)
        return real(*args, **kwargs)

    monkeypatch.setattr(core_module, "read_applets", recording)
    backend.insert(DEMO_READER, SimulatedCard(encode_card(demo_profile(0)),
                                              nhso_image=encode_nhso(COVERAGE)))
    await next_event(sub, "card.read", DEMO_READER)
    assert backend.photo_asked.wait(10)
    request = asyncio.ensure_future(svc.get_card(nhso=True))
    # A wrong program reads the applet now, while the photo is held; give it the chance.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(called.wait(), 1.0)
    backend.gate.set()
    _, card = await asyncio.wait_for(request, 10)
    assert photo_at_call == [True]
    assert card.nhso == COVERAGE and card.photo == demo_profile(0).photo
