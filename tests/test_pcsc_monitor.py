"""The reader monitor over real pcscd: reader and card events, recovery, clean shutdown."""

from __future__ import annotations

import threading

import pytest

from agent.card.session import read_card
from agent.card.simulator import ATR_3B67, ATR_3B68, ATR_3B79
from agent.monitor import ReaderMonitor
from agent.readers import pcsc
from agent.readers.pcsc import PcscBackend
from testrig.pcsc_rig import (
    EventLog,
    MonitorRig,
    card_present,
    pcsc_monitor,
    pcscd,
    slots,
    wait_states,
)
from testrig.vpcd_card import READER_NAMES, VirtualCard

pytestmark = pytest.mark.pcsc


def test_both_virtual_readers_are_reported_by_name(pcsc_monitor):
    events = pcsc_monitor.events
    kinds = events.kinds()
    assert kinds[0] == "pcsc_available"
    assert {e.reader for e in events.events if e.kind == "reader_added"} >= set(READER_NAMES)
    assert pcsc_monitor.monitor.available is True
    assert {s.name for s in pcsc_monitor.monitor.states} >= set(READER_NAMES)


@pytest.mark.parametrize("atr", [ATR_3B79, ATR_3B68, ATR_3B67], ids=lambda a: a[:2].hex())
def test_insertion_event_carries_the_atr_without_touching_the_card(pcsc_monitor, slots, atr,
                                                                  monkeypatch):
    connects = []
    real_connect = pcsc.scard.SCardConnect
    monkeypatch.setattr(pcsc.scard, "SCardConnect",
                        lambda *args: connects.append(args) or real_connect(*args))
    card = slots.insert(VirtualCard.demo(0, atr=atr), slot=1)
    inserted = pcsc_monitor.events.wait_for("card_inserted", card.reader)
    assert inserted.atr == atr
    card.remove()
    pcsc_monitor.events.wait_for("card_removed", card.reader)
    # The ATR came from the reader state: nobody connected to the card to look at it.
    assert connects == [] and card.apdus == 0
    # The other reader saw nothing.
    assert pcsc_monitor.events.kinds(READER_NAMES[0]) == ["reader_added"]


def test_insertion_counter_tells_two_insertions_apart(pcscd, slots):
    backend = PcscBackend()
    try:
        card = slots.insert(VirtualCard.demo(0))
        first = wait_states(backend, card_present(card.reader))
        card.remove()
        wait_states(backend, lambda s: not card_present(card.reader)(s))
        card = slots.insert(VirtualCard.demo(0))
        second = wait_states(backend, card_present(card.reader))
    finally:
        backend.close()
    assert _insertion(second, card.reader) != _insertion(first, card.reader)


def _insertion(states, reader):
    return next(s.insertion for s in states if s.name == reader)


def test_two_cards_in_two_readers_give_one_event_each(pcsc_monitor, slots):
    cards = [slots.insert(VirtualCard.demo(i), slot=i) for i in (0, 1)]
    for card in cards:
        event = pcsc_monitor.events.wait_for("card_inserted", card.reader)
        assert event.atr == card.card.atr
    for card in cards:
        card.remove()
        pcsc_monitor.events.wait_for("card_removed", card.reader)
    for name in READER_NAMES:
        assert pcsc_monitor.events.kinds(name) == ["reader_added", "card_inserted",
                                                  "card_removed"]


@pytest.mark.parametrize("how", ["terminated", "killed"])
def test_pcscd_restart_is_reported_and_readers_come_back(pcscd, pcsc_monitor, slots, how):
    if not pcscd.owned:
        pytest.skip("pcscd was started outside the tests; it is not ours to restart")
    events = pcsc_monitor.events
    card = slots.insert(VirtualCard.demo(0))
    events.wait_for("card_inserted", card.reader)
    try:
        pcscd.stop(kill=how == "killed")
        unavailable = events.wait_for("pcsc_unavailable")
        assert unavailable.error == "pcsc_unavailable"
        # The card in the dead service and both readers are reported gone.
        events.wait_for("card_removed", card.reader)
        for name in READER_NAMES:
            events.wait_for("reader_removed", name)
        assert pcsc_monitor.monitor.available is False
    finally:
        pcscd.start()
    events.wait_for("pcsc_available")
    for name in READER_NAMES:
        events.wait_for("reader_added", name)
    card.remove()               # its vpcd connection died with the old daemon
    card = slots.insert(VirtualCard.demo(1), slot=1)
    inserted = events.wait_for("card_inserted", card.reader)
    with pcsc_monitor.backend.connect(inserted.reader) as channel:
        result = read_card(channel.transmit, channel.atr)
    assert result.text == card_profile(1).text
    assert pcsc_monitor.monitor.alive


def card_profile(variant: int):
    from agent.card.demo import demo_profile

    return demo_profile(variant)


class _FailingOnce(PcscBackend):
    """A real backend whose next wait raises an unexpected error once."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = threading.Event()

    def wait_for_change(self, known, timeout=None):
        if self.fail_next.is_set():
            self.fail_next.clear()
            raise RuntimeError("injected monitor fault")
        return super().wait_for_change(known, timeout)


def test_exception_in_monitor_thread_is_an_event_and_monitoring_goes_on(pcscd, slots):
    backend = _FailingOnce()
    events = EventLog()
    monitor = ReaderMonitor(backend, events, backoff=(0.05, 0.1))
    monitor.start()
    try:
        events.wait_for("reader_added", READER_NAMES[1])
        backend.fail_next.set()
        card = slots.insert(VirtualCard.demo(0))    # wakes the wait, which then fails
        error = events.wait_for("monitor_error")
        assert error.error == "internal_error"
        events.wait_for("card_inserted", card.reader)
        card.remove()
        events.wait_for("card_removed", card.reader)
        assert monitor.alive
    finally:
        monitor.stop()
        backend.close()
    assert not monitor.alive


def test_monitor_stops_promptly_and_leaves_no_thread(pcscd):
    before = threading.active_count()
    for _ in range(5):
        rig = MonitorRig().start()
        rig.stop()
        assert not rig.monitor.alive
    # At most one stray thread (another fixture's may end late); a monitor that left its
    # thread behind would leave five.
    assert threading.active_count() <= before + 1
