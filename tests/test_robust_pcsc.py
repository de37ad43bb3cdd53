"""Robustness through real pcscd: soak, cards pulled at every APDU, pcscd killed mid-read,
readers disappearing, a slow card under concurrent requests.

The agent runs as a real ``thaicard-agent serve --backend pcsc`` process (footprint read
from /proc) or, where the test needs to look inside, as the core (``CardService``) in this
process. No timed assertions: every wait has a generous timeout, and what is checked is
what was served (never a wrong or partial card) and what was left behind.

``SOAK_CYCLES`` sets the soak length: insert/read/remove cycles, both vpcd slots at once.
The default, 500, takes about 3.5 minutes (pcscd polls vpcd every ~400 ms, so a cycle
costs ~0.8 s per slot); ``SOAK_CYCLES=100`` is a quick local run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from agent.card.demo import demo_profile
from agent.core import CardService
from agent.readers.pcsc import PcscBackend
from testrig.pcsc_rig import OUTPUT, PcscDaemon, pcscd, settle_empty, socket_answers
from testrig.robust_support import AgentProcess, WsInbox, expected_cards
from testrig.vpcd_card import READER_NAMES, VirtualCard

pytestmark = pytest.mark.pcsc

SOAK_CYCLES = int(os.environ.get("SOAK_CYCLES", "500"))
API_CLIENT_PAUSE = 0.005          # ~150 requests/s: a busy page, not a CPU hog on 2 cores
# What the agent may answer while a card comes and goes (anything else is a failure).
TRANSIENT = {"no_card", "card_removed"}
# Leak bounds for the soak, against a baseline taken after warm-up.
RSS_GROWTH_KIB = 24 * 1024
EXTRA_THREADS = 3
EXTRA_FDS = 8

EXPECTED = expected_cards()


def card_path(reader: str, photo: bool = True) -> str:
    return f"/v1/readers/{urllib.parse.quote(reader, safe='')}/card" + ("?photo=1" if photo
                                                                        else "")


def check_card_view(view: dict[str, Any], allowed: set[int], where: str,
                    photo_asked: bool = False) -> int:
    """``view`` (a /v1 card or a card.read payload) is a complete card of an allowed variant
    (with its photo, when the request asked for it)."""
    expected = EXPECTED.get(view["citizen_id"])
    assert expected is not None, f"{where}: a citizen id no card carries"
    assert expected["variant"] in allowed, (f"{where}: variant {expected['variant']} served, "
                                            f"cards in the slot were {sorted(allowed)}")
    got = {k: v for k, v in view.items() if k not in ("read", "photo", "photo_error")}
    want = {k: v for k, v in expected.items() if k not in ("variant", "photo")}
    assert got == want, f"{where}: card fields differ from the card's"
    photo = view.get("photo")
    if photo_asked:
        assert photo is not None and "base64" in photo, f"{where}: the photo is missing"
    if photo is not None and "base64" in photo:
        assert base64.b64decode(photo["base64"]) == base64.b64decode(
            expected["photo"]["base64"]), f"{where}: partial or wrong photo"
    return expected["variant"]


@pytest.fixture
def pcsc_agent(pcscd: PcscDaemon) -> Iterator[AgentProcess]:
    settle_empty()
    agent = AgentProcess(backend="pcsc", log_level="INFO")
    agent.start()
    try:
        agent.wait_listening()
        agent.wait_status(lambda s: {r["name"] for r in s["readers"]} >= set(READER_NAMES))
        yield agent
    finally:
        code = agent.stop()
        log = agent.log_text()
        (OUTPUT / "robust").mkdir(parents=True, exist_ok=True)
        (OUTPUT / "robust" / f"agent-{agent.port}.log").write_text(log)
        assert "Traceback" not in log, log[-3000:]
        assert code == 0, f"agent exit code {code}"


@pytest.fixture
def inbox(pcsc_agent: AgentProcess) -> Iterator[WsInbox]:
    ws = WsInbox(pcsc_agent.ws_url)
    ws.wait("snapshot")
    yield ws
    ws.close()


class SlotHistory:
    """Which variants have been in each slot, for the API checker to judge answers by."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: dict[str, list[int]] = {name: [] for name in READER_NAMES}

    def inserted(self, reader: str, variant: int) -> None:
        with self._lock:
            self._seen[reader].append(variant)

    def recent(self, reader: str) -> set[int]:
        # The card now in the slot, or the one before it: pcscd reports a removal a
        # few hundred ms late, and until then the old card is what the reader holds.
        with self._lock:
            return set(self._seen[reader][-2:])


def insert_read_remove(agent: AgentProcess, inbox: WsInbox, history: SlotHistory,
                       slot: int, variant: int) -> None:
    reader = READER_NAMES[slot]
    card = VirtualCard.demo(variant)
    mark = inbox.mark()
    history.inserted(reader, variant)
    card.insert(slot)
    try:
        _, read = inbox.wait("card.read", reader, mark)
        check_card_view(read["card"], {variant}, f"card.read on {reader}")
        _, photo = inbox.wait("card.photo", reader, mark)
        assert base64.b64decode(photo["photo"]) == demo_profile(variant).photo
        errors = [m for m in inbox.since(mark, reader) if m["type"] == "card.error"]
        assert not errors, errors
    finally:
        mark = inbox.mark()
        card.remove()
    inbox.wait("card.removed", reader, mark)


@pytest.mark.timeout(120 + SOAK_CYCLES)      # ~0.4 s per cycle over two slots
def test_soak_insert_read_remove_while_an_api_client_reads(pcsc_agent, inbox):
    agent, history = pcsc_agent, SlotHistory()
    for slot in (0, 1):                            # warm up: lazy imports, thread pools
        insert_read_remove(agent, inbox, history, slot, slot)
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda s: insert_read_remove(agent, inbox, history, s, 10 + s), (0, 1)))
    base = agent.footprint()
    reads_before = json.loads(agent.get("/v1/status")[1])["reads"]

    stop = threading.Event()
    served = {"cards": 0, "transient": 0}
    problems: list[str] = []

    def api_client() -> None:
        """Reads both readers as fast as it can while cards come and go."""
        i = 0
        while not stop.is_set():
            reader = READER_NAMES[i % 2]
            i += 1
            status, body = agent.get(card_path(reader), timeout=30)
            answer = json.loads(body)
            try:
                if status == 200:
                    check_card_view(answer["card"], history.recent(reader), f"GET {reader}",
                                    photo_asked=True)
                    served["cards"] += 1
                else:
                    assert answer.get("code") in TRANSIENT, f"GET {reader}: {status} {answer}"
                    served["transient"] += 1
            except AssertionError as exc:
                problems.append(str(exc))
            stop.wait(API_CLIENT_PAUSE)

    def cycles(slot: int) -> None:
        for n in range(slot, SOAK_CYCLES, 2):
            insert_read_remove(agent, inbox, history, slot, (20 + n) % 100)

    client = threading.Thread(target=api_client, name="api-client")
    client.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(cycles, slot) for slot in (0, 1)]:
                done.result()
    finally:
        stop.set()
        client.join(60)

    after = agent.footprint()
    status = json.loads(agent.get("/v1/status")[1])
    assert not problems, problems[:5]
    assert served["cards"] > SOAK_CYCLES // 4, served     # the client really read cards
    # Each insertion was read exactly once, however many requests came meanwhile.
    assert status["reads"] - reads_before == SOAK_CYCLES
    assert after.rss_kib - base.rss_kib < RSS_GROWTH_KIB, (base, after)
    assert after.threads <= base.threads + EXTRA_THREADS, (base, after)
    assert after.fds <= base.fds + EXTRA_FDS, (base, after)
    (OUTPUT / "robust").mkdir(parents=True, exist_ok=True)
    (OUTPUT / "robust" / "soak.json").write_text(json.dumps({
        "cycles": SOAK_CYCLES, "served": served, "before": base.to_json(),
        "after": after.to_json()}, indent=2) + "\n")


# -- a card pulled at every APDU position of a read ---------------------------------------------
def read_shape(variant: int = 0) -> tuple[int, int]:
    """(APDUs before the text fields are complete, APDUs of the whole read) for the core's
    text-first read of a demo card (cards state their photo's length: it varies by card)."""
    from agent.card.encode import encode_card
    from agent.card.session import read_card
    from agent.card.simulator import SimulatedCard

    card = SimulatedCard(encode_card(demo_profile(variant)))
    result = read_card(card.process, card.atr, on_text=lambda _c: None)
    return result.stats.text_apdus, result.stats.apdus


async def next_of(sub, types: set[str], reader: str, timeout: float = 15.0):
    async def find():
        while True:
            event = await sub.get()
            assert event is not None, "the event bus dropped the subscriber"
            if event.type in types and event.reader == reader:
                return event
    return await asyncio.wait_for(find(), timeout)


async def test_card_pulled_at_every_apdu_position_never_yields_a_partial_card(pcscd):
    shapes = {variant: read_shape(variant) for variant in range(100)}
    text_apdus = shapes[0][0]
    assert {text for text, _ in shapes.values()} == {text_apdus}
    total = max(apdus for _, apdus in shapes.values())
    settle_empty()
    service = CardService(PcscBackend())
    await service.start()
    outcomes: dict[int, list[str]] = {}

    async def pull_at(position: int, slot: int) -> None:
        # A card whose read reaches this position (photo lengths differ from card to card).
        long_enough = [v for v, (_, apdus) in shapes.items() if apdus >= position]
        reader, variant = READER_NAMES[slot], long_enough[position % len(long_enough)]
        sub = service.events.subscribe()
        card = VirtualCard.demo(variant, pull_at_apdu=position)
        try:
            await asyncio.to_thread(card.insert, slot)
            await next_of(sub, {"card.inserted"}, reader)
            seen: list[str] = []
            while True:
                event = await next_of(sub, {"card.read", "card.photo", "card.error",
                                            "card.removed"}, reader)
                seen.append(event.type if event.type != "card.error"
                            else f"card.error:{event.payload['code']}")
                if event.type == "card.read":
                    check_card_view(event.payload["card"], {variant}, f"pulled at {position}")
                if event.type == "card.removed":
                    break
            outcomes[position] = seen
            assert card.wait_pulled(5) and card.apdus == position - 1
            with pytest.raises(Exception) as gone:
                await service.get_card(reader, photo=True)
            # no_card; or card_removed when pcscd (vpcd) reported the pulled card inserted
            # again for a few ms and the agent's fresh read found it gone (once in 5 runs
            # under stress-ng). Never a card.
            assert getattr(gone.value, "code", None) in TRANSIENT, gone.value
        finally:
            service.events.unsubscribe(sub)
            await asyncio.to_thread(card.remove)

    async def lane(slot: int) -> None:
        for position in range(1 + slot, total + 1, 2):
            await pull_at(position, slot)

    try:
        await asyncio.gather(lane(0), lane(1))
        # The agent is none the worse: whole cards in both readers read as usual.
        subs = [service.events.subscribe() for _ in (0, 1)]    # one per reader: next_of
        cards = [VirtualCard.demo(50 + slot) for slot in (0, 1)]  # drops other readers' events
        for slot, card in enumerate(cards):
            await asyncio.to_thread(card.insert, slot)
        for slot in (0, 1):
            await next_of(subs[slot], {"card.photo"}, READER_NAMES[slot])
            _, read = await service.get_card(READER_NAMES[slot], photo=True)
            assert read.photo == demo_profile(50 + slot).photo
        for card in cards:
            await asyncio.to_thread(card.remove)
    finally:
        await service.stop()
        settle_empty()

    assert sorted(outcomes) == list(range(1, total + 1))
    for position, seen in outcomes.items():
        assert "card.photo" not in seen, (position, seen)          # never a partial photo
        assert seen.count("card.read") == (1 if position > text_apdus else 0), (position, seen)
        assert set(seen) <= {"card.read", "card.error:card_removed", "card.removed"}, \
            (position, seen)


# -- pcscd killed in the middle of a read, and started again ------------------------------------
def test_pcscd_killed_mid_read_then_restarted_the_agent_recovers(pcscd, pcsc_agent, inbox):
    if not pcscd.owned:
        pytest.skip("pcscd was started outside the tests; it is not ours to kill")
    reader = READER_NAMES[0]
    # The card keeps the read's 12th APDU (of 49) unanswered, so pcscd dies mid-read for sure.
    card = VirtualCard.demo(7, apdu_delay=0.03, hold_at_apdu=12)
    mark = inbox.mark()
    card.insert(0)
    inbox.wait("card.inserted", reader, mark)
    assert card.held.wait(30), f"the agent's read never reached APDU 12 ({card.apdus} answered)"
    pcscd.stop(kill=True)
    assert not pcscd.running and not socket_answers()
    try:
        inbox.wait("pcsc.unavailable", None, mark, timeout=20)
        # The reader and its card are gone for the agent; nothing stale is served.
        for path in ("/v1/card?photo=1", card_path(reader)):
            status, body = pcsc_agent.get(path, timeout=30)
            assert status != 200, f"{path} served a card while pcscd was down"
            assert json.loads(body)["code"] in {"pcsc_unavailable", "no_reader",
                                                "reader_not_found", "no_card"}
    finally:
        card.remove()
        pcscd.start()
    assert card.apdus == 11                       # the read was cut in the middle, not after
    inbox.wait("pcsc.available", None, mark, timeout=30)
    for name in READER_NAMES:
        inbox.wait("reader.added", name, mark, timeout=30)
    during = inbox.since(mark, reader)
    assert not [m for m in during if m["type"] == "card.photo"], "a photo from a cut read"

    reads = json.loads(pcsc_agent.get("/v1/status")[1])["reads"]
    history = SlotHistory()
    insert_read_remove(pcsc_agent, inbox, history, 0, 8)
    assert json.loads(pcsc_agent.get("/v1/status")[1])["reads"] == reads + 1


# -- the readers disappear while PC/SC keeps running --------------------------------------------
def test_readers_disappearing_drop_their_cards_and_come_back(pcscd, pcsc_agent, inbox,
                                                             tmp_path):
    """pcscd 1.9 (udev build) cannot drop a serial reader at run time (SIGUSR1 does not
    re-read reader.conf.d), so the readers are taken away by running pcscd without the
    vpcd entry: PC/SC is up, the agent's readers are gone; then they are put back."""
    if not pcscd.owned:
        pytest.skip("pcscd was started outside the tests; it is not ours to replace")
    reader = READER_NAMES[1]
    history = SlotHistory()
    card = VirtualCard.demo(21)
    mark = inbox.mark()
    history.inserted(reader, 21)
    card.insert(1)
    inbox.wait("card.photo", reader, mark)
    assert pcsc_agent.get(card_path(reader))[0] == 200

    no_readers = tmp_path / "reader.conf.d"
    no_readers.mkdir()
    bare = PcscDaemon(OUTPUT / "pcscd-no-readers.log", config_dir=no_readers)
    mark = inbox.mark()
    pcscd.stop()
    try:
        bare.start()
        for name in READER_NAMES:
            inbox.wait("reader.removed", name, mark, timeout=30)
        inbox.wait("pcsc.available", None, mark, timeout=30)
        assert json.loads(pcsc_agent.get("/v1/readers")[1])["readers"] == []
        for path in (card_path(reader), "/v1/card"):
            status, body = pcsc_agent.get(path)
            assert status != 200 and json.loads(body)["code"] == "no_reader", (path, body)
    finally:
        card.remove()
        bare.stop()
        pcscd.start()
    for name in READER_NAMES:
        inbox.wait("reader.added", name, mark, timeout=30)
    insert_read_remove(pcsc_agent, inbox, history, 1, 22)


# -- a slow card, many callers at once ---------------------------------------------------------
def test_slow_cards_under_concurrent_requests_are_read_once_each(pcsc_agent, inbox):
    totals = [read_shape(30 + slot)[1] for slot in (0, 1)]     # photo lengths differ
    cards = [VirtualCard.demo(30 + slot, apdu_delay=0.03) for slot in (0, 1)]
    mark = inbox.mark()
    for slot, card in enumerate(cards):
        card.insert(slot)
    for name in READER_NAMES:
        inbox.wait("card.inserted", name, mark)

    def fetch(i: int) -> tuple[int, bool, int, dict]:
        slot, photo = i % 2, bool(i % 3)
        status, body = pcsc_agent.get(card_path(READER_NAMES[slot], photo), timeout=60)
        return slot, photo, status, json.loads(body)

    try:
        with ThreadPoolExecutor(24) as pool:   # all of them wait on the read in progress
            answers = list(pool.map(fetch, range(48)))
        for slot, photo, status, body in answers:
            assert status == 200, body
            check_card_view(body["card"], {30 + slot}, f"slow card {slot}", photo)
        for name in READER_NAMES:
            inbox.wait("card.photo", name, mark)
        # One read per card: the 48 requests shared it. pcscd (vpcd) now and then reports a
        # fresh card as inserted, removed and inserted again within a few ms; the agent then
        # rightly starts over on the "new" card, so a reader that saw n insertions may have
        # been read up to n times. Never more, and never fewer than once.
        for slot, (name, card) in enumerate(zip(READER_NAMES, cards, strict=True)):
            seen = [m["type"] for m in inbox.since(mark, name)]
            insertions = seen.count("card.inserted")
            if insertions == 1:
                assert card.apdus == totals[slot], seen
            else:
                assert totals[slot] <= card.apdus <= insertions * totals[slot], seen
    finally:
        for card in cards:
            card.remove()
    for name in READER_NAMES:
        inbox.wait("card.removed", name, mark)
