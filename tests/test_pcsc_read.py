"""Whole-card reads through pyscard + pcscd + vpcd + our virtual card, and field failures."""

from __future__ import annotations

import concurrent.futures
import os
import random
import threading

import pytest

from agent.card.demo import demo_profile
from agent.card.session import CardRead, read_card
from agent.card.simulator import ATR_3B67, ATR_3B68, ATR_3B78, ATR_3B79
from agent.errors import CardRemoved, NoCard, ReaderError, ReaderNotFound
from agent.readers import pcsc
from agent.readers.pcsc import PcscBackend, error_for
from testrig.pcsc_rig import card_present, pcsc_monitor, pcscd, slots, wait_states
from testrig.vpcd_card import READER_NAMES, VirtualCard

pytestmark = pytest.mark.pcsc

PULL_ITERATIONS = 24
CYCLES_PER_READER = 25        # two readers at once: 50 cycles in all


@pytest.fixture
def backend(pcscd):
    backend = PcscBackend()
    yield backend
    backend.close()


def insert_and_wait(backend, slots, card: VirtualCard, slot: int = 0) -> VirtualCard:
    slots.insert(card, slot)
    wait_states(backend, card_present(card.reader))
    return card


def read(backend, reader: str, **options) -> CardRead:
    with backend.connect(reader) as channel:
        return read_card(channel.transmit, channel.atr, **options)


def assert_matches(result: CardRead, variant: int) -> None:
    profile = demo_profile(variant)
    assert result.text == profile.text
    assert result.photo == profile.photo


@pytest.mark.parametrize("atr", [ATR_3B79, ATR_3B78, ATR_3B68, ATR_3B67],
                         ids=lambda a: a[:2].hex())
def test_full_read_matches_the_profile(backend, slots, atr):
    card = insert_and_wait(backend, slots, VirtualCard.demo(1, atr=atr, strict_p2=True))
    result = read(backend, card.reader)
    assert_matches(result, 1)
    assert result.atr == atr
    assert result.stats.apdus == card.apdus        # no hidden retries, no probing


def test_text_first_read_hands_over_the_text_before_the_photo(backend, slots):
    card = insert_and_wait(backend, slots, VirtualCard.demo(0), slot=1)
    seen: list[tuple[int, CardRead]] = []
    result = read(backend, card.reader, on_text=lambda c: seen.append((card.apdus, c)))
    assert_matches(result, 0)
    [(apdus_at_text, text)] = seen
    assert text.text == demo_profile(0).text and apdus_at_text < card.apdus


def test_two_readers_read_two_cards_at_the_same_time(backend, slots):
    cards = [insert_and_wait(backend, slots, VirtualCard.demo(i, apdu_delay=0.002), slot=i)
             for i in (0, 1)]
    results: dict[int, CardRead | BaseException] = {}
    both_connected = threading.Barrier(2, timeout=10)

    def work(i: int) -> None:
        try:
            with backend.connect(cards[i].reader) as channel:
                both_connected.wait()           # the two reads really overlap
                results[i] = read_card(channel.transmit, channel.atr)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for i in (0, 1):
        assert isinstance(results[i], CardRead), results[i]
        assert_matches(results[i], i)


def test_card_pulled_at_a_random_apdu_ends_the_read_with_card_removed(pcsc_monitor, slots):
    seed = int(os.environ.get("PULL_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    events, backend = pcsc_monitor.events, pcsc_monitor.backend
    full = slots.insert(VirtualCard.demo(0))
    # The monitor's event, not wait_states on its backend: a second wait on the monitor's
    # context queues behind its endless SCardGetStatusChange (a hang seen under load).
    events.wait_for("card_inserted", full.reader)
    read(backend, full.reader)
    apdus_per_read = full.apdus
    full.remove()
    events.wait_for("card_removed", full.reader)
    for i in range(PULL_ITERATIONS):
        pull_at = rng.randint(1, apdus_per_read)
        slot = i % 2
        card = slots.insert(VirtualCard.demo(slot, pull_at_apdu=pull_at), slot)
        events.wait_for("card_inserted", card.reader)
        outcome: list[object] = []
        with pytest.raises(CardRemoved):
            try:
                outcome.append(read(backend, card.reader))
            except ReaderError as exc:
                pytest.fail(f"seed {seed}, pulled at APDU {pull_at}: {exc}")
        assert not outcome, "a partial card was returned"
        assert card.apdus == pull_at - 1
        events.wait_for("card_removed", card.reader)


def test_card_pulled_by_hand_while_a_command_is_in_flight(backend, slots):
    # A slow card (30 ms per APDU); the person pulls it while its 20th command is being
    # answered. The card tells when that command arrives: no guess at how long pcscd takes
    # to report the card or the read to get there.
    card = VirtualCard.demo(0, apdu_delay=0.03, hold_at_apdu=20)
    slots.insert(card)
    wait_states(backend, card_present(card.reader))
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read, backend, card.reader)
        assert card.held.wait(30), f"the read never reached APDU 20 ({card.apdus} answered)"
        card.remove()                               # from another thread, mid-command
        with pytest.raises(CardRemoved):
            reading.result(30)
    assert card.apdus == 19


def test_garbled_answer_is_retried_once_after_a_reconnect(backend, slots):
    card = insert_and_wait(backend, slots, VirtualCard.demo(0, glitch_at_apdu=3))
    result = read(backend, card.reader)
    assert_matches(result, 0)
    assert card.glitch_at_apdu is None      # the glitch happened


def test_comm_error_is_retried_once(backend, slots, monkeypatch):
    card = insert_and_wait(backend, slots, VirtualCard.demo(0))
    real_transmit = pcsc.scard.SCardTransmit
    failures = {"left": 1}

    def flaky(handle, protocol, apdu):
        if apdu[:2] == [0x80, 0xB0] and failures["left"]:
            failures["left"] -= 1
            return pcsc.SCARD_E_COMM_ERROR, []
        return real_transmit(handle, protocol, apdu)

    monkeypatch.setattr(pcsc.scard, "SCardTransmit", flaky)
    assert_matches(read(backend, card.reader), 0)
    assert failures["left"] == 0

    failures["left"] = 2                    # twice in a row: give up, the card is still in
    backend.removal_grace = 0.2
    with pytest.raises(ReaderError) as err:
        read(backend, card.reader)
    assert "SCARD_E_COMM_ERROR" in str(err.value)


def test_connect_is_retried_once_when_a_fresh_card_is_not_ready(backend, slots, monkeypatch):
    card = insert_and_wait(backend, slots, VirtualCard.demo(0))
    real_connect = pcsc.scard.SCardConnect
    calls = []

    def not_ready_first(context, reader, share, protocols):
        calls.append((reader, share, protocols))
        if len(calls) == 1:
            return pcsc.scard.SCARD_W_UNPOWERED_CARD, 0, 0
        return real_connect(context, reader, share, protocols)

    monkeypatch.setattr(pcsc.scard, "SCardConnect", not_ready_first)
    backend.settle = 0.05
    assert_matches(read(backend, card.reader), 0)
    assert len(calls) == 2
    assert all(share == pcsc.scard.SCARD_SHARE_SHARED for _, share, _ in calls)


def test_disconnect_leaves_the_card_as_it_was(backend, slots):
    """Another program's session on the same card survives our connect and disconnect."""
    card = insert_and_wait(backend, slots, VirtualCard.demo(0))
    with backend.connect(card.reader) as other_program:
        select = bytes.fromhex("00A4040008A000000054480001")
        assert other_program.transmit(select)[-2] == 0x61
        assert_matches(read(backend, card.reader), 0)   # connects SHARED, leaves with LEAVE
        # Still selected: a reset or power cycle would have lost the applet (6986).
        response = other_program.transmit(bytes.fromhex("80B0000402000D"))
        assert response[-2:] == b"\x61\x0d"


def test_connect_errors_are_typed(backend, slots):
    wait_states(backend, lambda s: not card_present(READER_NAMES[1])(s))
    with pytest.raises(NoCard):
        backend.connect(READER_NAMES[1])
    with pytest.raises(ReaderNotFound):
        backend.connect("No Such Reader 00 00")


@pytest.mark.parametrize("name, expected", [
    ("SCARD_E_NO_SERVICE", "pcsc_unavailable"), ("SCARD_E_SERVICE_STOPPED", "pcsc_unavailable"),
    ("SCARD_W_REMOVED_CARD", "card_removed"), ("SCARD_E_NO_SMARTCARD", "no_card"),
    ("SCARD_E_UNKNOWN_READER", "reader_not_found"), ("SCARD_E_SHARING_VIOLATION", "reader_busy"),
    ("SCARD_E_TIMEOUT", "read_timeout"), ("SCARD_E_NOT_TRANSACTED", "reader_error"),
])
def test_pcsc_codes_map_to_agent_errors(name, expected):
    error = error_for(getattr(pcsc.scard, name), "test")
    assert error.code == expected and name in str(error)


def test_fifty_insert_read_remove_cycles_leak_no_threads_or_fds(pcsc_monitor, slots):
    events, backend = pcsc_monitor.events, pcsc_monitor.backend

    def cycle(slot: int) -> None:
        card = slots.insert(VirtualCard.demo(slot), slot)
        inserted = events.wait_for("card_inserted", card.reader)
        with backend.connect(inserted.reader) as channel:
            result = read_card(channel.transmit, inserted.atr)
        assert result.text.citizen_id == demo_profile(slot).text.citizen_id
        card.remove()
        events.wait_for("card_removed", card.reader)
        slots.cards.remove(card)

    for slot in (0, 1):                        # warm up: lazily opened resources settle
        cycle(slot)
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))

    failures: list[BaseException] = []

    def reader_loop(slot: int) -> None:
        try:
            for _ in range(CYCLES_PER_READER):
                cycle(slot)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    loops = [threading.Thread(target=reader_loop, args=(slot,)) for slot in (0, 1)]
    for t in loops:
        t.start()
    for t in loops:
        t.join(100)
    assert not failures, failures
    # Bounded, not exact: a pyscard/pcsc-lite helper thread or fd may come and go with the
    # machine's timing; a leak per cycle would add 50 of them.
    assert threading.active_count() <= threads + 2
    assert len(os.listdir("/proc/self/fd")) <= fds + 4
    assert pcsc_monitor.monitor.alive
