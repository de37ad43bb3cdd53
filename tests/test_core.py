"""The core over the demo reader: one read per insertion, cache, removal, events."""

from __future__ import annotations

import asyncio

import pytest

from agent.card.demo import demo_profile
from agent.card.encode import encode_card
from agent.card.simulator import ATR_NOT_THAI, SimulatedCard
from agent.core import CardService, pick_reader
from agent.errors import AgentError, CardRemoved, NoCard, NoReader, NotThaiIdCard, ReaderNotFound
from agent.events import EventBus
from agent.readers.base import ReaderEvent
from agent.readers.demo import DEMO_READER, DemoBackend, demo_card
from tests.core_support import next_event

SECOND = "Demo Reader 1"


@pytest.fixture
async def service():
    backend = DemoBackend((DEMO_READER, SECOND), apdu_delay=0.001)
    svc = CardService(backend)
    await svc.start()
    yield svc, backend
    await svc.stop()


async def test_readers_known_at_start(service):
    svc, _ = service
    assert [r["name"] for r in svc.readers()] == [DEMO_READER, SECOND]
    assert svc.pcsc_state() == "available"
    assert svc.choose_reader().name == DEMO_READER          # the one with a card


async def test_one_read_shared_by_many_callers(service):
    svc, backend = service
    results = await asyncio.gather(*(svc.get_card(photo=True) for _ in range(50)))
    cards = {id(card) for _, card in results}
    assert len(cards) == 1 and svc.reads == 1
    _, card = results[0]
    assert card.text == demo_profile(0).text and card.photo == demo_profile(0).photo


async def test_text_event_comes_before_photo(service):
    svc, backend = service
    sub = svc.events.subscribe()
    backend.insert(SECOND, demo_card(1))
    inserted = await next_event(sub, "card.inserted", SECOND)
    read = await next_event(sub, "card.read", SECOND)
    photo = await next_event(sub, "card.photo", SECOND)
    assert inserted.reader == read.reader == photo.reader == SECOND
    assert inserted.seq < read.seq < photo.seq
    assert read.payload["card"]["citizen_id"] == demo_profile(1).text.citizen_id
    assert read.payload["card"]["photo"] is None and read.payload["photo_pending"] is True
    assert photo.payload["size"] == len(demo_profile(1).photo)
    assert set(read.envelope()) >= {"v", "type", "seq", "time", "reader", "card"}


async def test_removal_clears_the_cache_at_once(service):
    svc, backend = service
    sub = svc.events.subscribe()
    await svc.get_card(photo=True)
    backend.remove(DEMO_READER)
    await next_event(sub, "card.removed")
    with pytest.raises(NoCard):
        await svc.get_card(DEMO_READER)
    assert svc.readers_with_cards([DEMO_READER])[0]["card"] is None
    backend.insert(DEMO_READER, demo_card(1))
    await next_event(sub, "card.inserted")
    _, card = await svc.get_card(DEMO_READER, photo=True)
    assert card.text.citizen_id == demo_profile(1).text.citizen_id   # never the old card


async def test_removal_mid_read_ends_waiters_with_card_removed(service):
    svc, backend = service
    backend.apdu_delay = 0.02
    sub = svc.events.subscribe()
    backend.insert(SECOND, demo_card(1))
    await next_event(sub, "card.inserted", SECOND)
    waiter = asyncio.create_task(svc.get_card(SECOND, photo=True))
    await next_event(sub, "card.read", SECOND)             # text arrived, photo under way
    backend.remove(SECOND)
    with pytest.raises(CardRemoved):
        await waiter
    await next_event(sub, "card.removed", SECOND)
    assert svc.readers_with_cards([SECOND])[0]["card"] is None


async def test_not_a_thai_card_is_an_error_event(service):
    svc, backend = service
    sub = svc.events.subscribe()
    backend.insert(SECOND, SimulatedCard(encode_card(demo_profile(0)), atr=ATR_NOT_THAI,
                                         is_thai_id=False))
    err = await next_event(sub, "card.error", SECOND)
    assert err.payload["code"] == "not_thai_id" and err.payload["message_th"]
    with pytest.raises(NotThaiIdCard):
        await svc.get_card(SECOND)


async def test_reader_choice_and_errors(service):
    svc, backend = service
    with pytest.raises(ReaderNotFound):
        await svc.get_card("no such reader")
    svc.default_reader = SECOND
    assert svc.choose_reader().name == SECOND
    with pytest.raises(NoCard):
        await svc.get_card()
    sub = svc.events.subscribe()
    backend.remove_reader(SECOND)
    backend.remove_reader(DEMO_READER)
    await next_event(sub, "reader.removed")
    await next_event(sub, "reader.removed")
    with pytest.raises(NoReader):
        await svc.get_card()
    backend.add_reader("Late Reader")
    added = await next_event(sub, "reader.added")
    assert added.reader == "Late Reader" and svc.reader_names() == ["Late Reader"]


async def test_slow_subscriber_is_dropped_not_blocking(service):
    svc, backend = service
    slow = svc.events.subscribe()
    for _ in range(300):
        svc.events.publish("reader.error", None, code="internal_error")
    assert await slow.get() is None and svc.events.subscribers == 0


async def test_card_pulled_after_the_read_but_before_the_caller_resumes(service):
    svc, backend = service
    await svc.get_card(DEMO_READER, photo=True)            # read and cached
    waiter = asyncio.create_task(svc.get_card(DEMO_READER, photo=True))
    await asyncio.sleep(0)                                  # suspended on the finished read
    svc._on_reader_event(ReaderEvent("card_removed", DEMO_READER))
    with pytest.raises(CardRemoved) as err:
        await waiter                                        # never the card that left
    assert err.value.detail == DEMO_READER                  # which reader lost its card


@pytest.mark.parametrize(("readers", "name", "default", "chosen"), [
    ([("A", False), ("B", True)], None, None, "B"),          # the one with a card
    ([("A", False), ("B", False)], None, None, "A"),         # else the first
    ([("A", True), ("B", True)], None, "B", "B"),            # the default wins over a card
    ([("A", True), ("B", False)], None, "gone", "A"),        # a default that is not attached
    ([("A", True), ("B", True)], "B", "A", "B"),             # a named reader wins over all
])
def test_one_reader_rule(readers, name, default, chosen):
    assert pick_reader(readers, name, default) == chosen


def test_reader_rule_errors():
    with pytest.raises(NoReader):
        pick_reader([], None, "A")
    with pytest.raises(ReaderNotFound):
        pick_reader([("A", True)], "B")


def test_the_bus_takes_only_events_of_the_table():
    bus = EventBus()
    with pytest.raises(ValueError, match="EVENT_TABLE"):
        bus.publish("card.exploded", "R")
    with pytest.raises(ValueError, match="payload"):
        bus.publish("card.removed", "R", citizen_id="1")
    with pytest.raises(ValueError):
        bus.publish("heartbeat")                 # the WebSocket's own message, not the bus's
    assert bus.publish("card.inserted", "R", atr="3B 67").envelope()["atr"] == "3B 67"


async def test_demo_controls_only_on_the_demo_reader():
    from agent.readers.base import ReaderBackend

    class NotDemo(ReaderBackend):
        kind = "pcsc"
        def snapshot(self): return []
        def wait_for_change(self, known, timeout=None): return []
        def cancel(self): pass
        def connect(self, reader): raise AssertionError

    svc = CardService(NotDemo())
    assert svc.demo is False and svc.demo_card_present() is None
    with pytest.raises(AgentError) as err:
        svc.demo_insert()
    assert err.value.code == "not_found"


# -- read_exclusive: the transaction, the restarts, the one retry (no PC/SC needed) -----------

class _Flaky(SimulatedCard):
    """A card whose n-th command fails as ``failure`` says (counted across connects)."""

    def __init__(self, *args, fail_at=(), failure=None, **kw) -> None:
        super().__init__(*args, **kw)
        self.fail_at, self.failure, self.count = set(fail_at), failure, 0

    def process(self, apdu: bytes) -> bytes:
        self.count += 1
        if self.count in self.fail_at:
            return self.failure(apdu, super().process(apdu))
        return super().process(apdu)


class _Backend(DemoBackend):
    """The demo reader, with transactions counted and CardReset from the card's answer."""

    def __init__(self, card: SimulatedCard) -> None:
        super().__init__((DEMO_READER,), insert_demo_card=False)
        self.insert(DEMO_READER, card)
        self.transactions = []

    def connect(self, reader):
        from agent.errors import CardReset

        channel = super().connect(reader)
        backend, real = self, channel.transmit

        def transmit(apdu: bytes) -> bytes:
            answer = real(apdu)
            if answer == b"RESET":
                raise CardReset("reset by another program")
            return answer

        channel.transmit = transmit
        channel.begin_transaction = lambda: backend.transactions.append("begin")
        channel.end_transaction = lambda: backend.transactions.append("end")
        return channel


def test_read_exclusive_restarts_after_a_reset_and_then_gives_up():
    from agent.core import MAX_RESTARTS, read_exclusive
    from agent.errors import ReadInterrupted

    card = _Flaky(encode_card(demo_profile(0)), fail_at={5, 9},
                  failure=lambda apdu, answer: b"RESET")
    backend = _Backend(card)
    result = read_exclusive(backend, DEMO_READER)
    assert result.text == demo_profile(0).text and result.photo == demo_profile(0).photo
    assert backend.transactions == ["begin", "end"] * 3          # one per attempt, all ended

    always = _Flaky(encode_card(demo_profile(0)), fail_at=range(1, 10 ** 4),
                    failure=lambda apdu, answer: b"RESET")
    backend = _Backend(always)
    with pytest.raises(ReadInterrupted) as err:
        read_exclusive(backend, DEMO_READER)
    assert err.value.code == "read_interrupted"
    assert backend.transactions.count("begin") == MAX_RESTARTS + 1


def test_read_exclusive_reads_a_spoiled_read_once_more():
    from agent.core import read_exclusive

    def corrupt(apdu, answer):          # the first text block's id loses a digit
        return answer[:4] + b"9" + answer[5:]

    card = _Flaky(encode_card(demo_profile(0)), fail_at={3}, failure=corrupt)
    seen = []
    result = read_exclusive(_Backend(card), DEMO_READER, on_text=seen.append)
    assert result.text.citizen_id_valid and len(seen) == 1 and seen[0].text.citizen_id_valid

    def refuse(apdu, answer):
        return b"\x69\x85"

    once = _Flaky(encode_card(demo_profile(0)), fail_at={2}, failure=refuse)
    assert read_exclusive(_Backend(once), DEMO_READER).text == demo_profile(0).text
    # Refused again on the second read (its SELECT is command 3, its first read 4): served.
    twice = _Flaky(encode_card(demo_profile(0)), fail_at={2, 4}, failure=refuse)
    with pytest.raises(AgentError):
        read_exclusive(_Backend(twice), DEMO_READER)

    # An id whose check digit never holds is served after the second read, not refused.
    from dataclasses import replace

    profile = demo_profile(0)
    bad = replace(profile.text, citizen_id="1234567890123")
    odd = SimulatedCard(encode_card(type(profile)(bad, profile.photo)))
    backend = _Backend(odd)
    seen = []
    result = read_exclusive(backend, DEMO_READER, on_text=seen.append)
    assert not result.text.citizen_id_valid and len(seen) == 1
    assert backend.transactions.count("begin") == 2
