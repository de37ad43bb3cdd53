"""Card reading in the field, through pyscard + pcscd + vpcd: a reader shared with other
programs, the real readers' quirks, and the cards' odd contents (issue 12).

Every read here goes through the core's door (``read_exclusive``, or a running
``CardService``), so the transaction, the restarts and the retries are the agent's own.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from functools import reduce
from operator import xor

import pytest

from agent.card.demo import demo_profile
from agent.card.encode import encode_card
from agent.card.simulator import SimulatedCard
from agent.card.values import Address, CardDate, CardProfile, Name
from agent.core import CardService, read_exclusive
from agent.errors import CardReset, CardUnresponsive, ReadInterrupted
from agent.readers import pcsc
from agent.readers.pcsc import PcscBackend
from testrig.pcsc_other_client import OtherProgram, hold_exclusive

# pcscd and slots are fixtures: importing them is what puts them in scope.
from testrig.pcsc_rig import card_present, pcscd, settle_empty, slots, wait_states
from testrig.vpcd_card import (
    READER_NAMES,
    HangingCard,
    ReaderFetches,
    VirtualCard,
    jpeg_with_spaces_at_chunk_edges,
)

pytestmark = pytest.mark.pcsc

SHARED_INSERTIONS = 20
# "Slow" enough that the other programs' commands land between ours, short enough for CI.
SLOW_APDU_S = 0.003
ATR_NO_TH_NID = bytes.fromhex("3B 68 00 00 00 73 C8 40 00 00 90 00")   # a real card's
# T=1 only (TD1 = 01), historical bytes "TH NID 11", TCK: pcscd negotiates T=1.
_T1_BODY = bytes.fromhex("8A 01") + b"TH NID 11\x20"
ATR_T1 = b"\x3b" + _T1_BODY + bytes([reduce(xor, _T1_BODY)])


@pytest.fixture
def backend(pcscd):
    backend = PcscBackend()
    yield backend
    backend.close()


def insert(backend, slots, card: VirtualCard, slot: int = 0) -> VirtualCard:
    slots.insert(card, slot)
    wait_states(backend, card_present(card.reader))
    return card


def served(profile: CardProfile, atr: bytes | None = None, **options) -> VirtualCard:
    card = SimulatedCard(encode_card(profile), **({"atr": atr} if atr else {}))
    return VirtualCard(card, **options)


# -- a reader shared with other programs --------------------------------------------------------

async def test_other_programs_on_the_reader_never_spoil_a_read(pcscd):
    """Two other programs poll the reader throughout (one with its own transactions, one
    without) while the agent reads a slow card, 20 insertions of different cards: the
    agent serves the exact card every time, never a mix, never an error."""
    settle_empty()
    reader = READER_NAMES[0]
    # As such programs do, they poll with short pauses (one that re-took its transaction at
    # once, forever, would starve every other program on pcsc-lite, which polls for it).
    others = [OtherProgram(reader, transactions=True, pause=0.02),
              OtherProgram(reader, transactions=False, pause=0.005)]
    service = CardService(PcscBackend())
    await service.start()
    for other in others:
        other.start()
    errors: list[str] = []
    try:
        for i in range(SHARED_INSERTIONS):
            variant = i % 7
            profile = demo_profile(variant)
            sub = service.events.subscribe()
            card = VirtualCard.demo(variant, apdu_delay=SLOW_APDU_S)
            try:
                await asyncio.to_thread(card.insert, 0)
                while True:
                    event = await asyncio.wait_for(sub.get(), 30)
                    assert event is not None
                    if event.reader != reader:
                        continue
                    if event.type == "card.error":
                        errors.append(f"insertion {i}: {event.payload}")
                        break
                    if event.type == "card.photo":
                        break
                _, read = await service.get_card(reader, photo=True)
                assert read.text == profile.text, f"insertion {i}"
                assert read.photo == profile.photo, f"insertion {i}"
                # The card stays in a moment, as at a desk: the agent holds no transaction
                # after its read, so the other programs get their turns.
                await asyncio.sleep(0.3)
            finally:
                service.events.unsubscribe(sub)
                await asyncio.to_thread(card.remove)
                await asyncio.to_thread(settle_empty)
    finally:
        for other in others:
            other.stop()
        await service.stop()
    assert errors == []
    # The other programs really were there, and kept working too.
    assert all(other.exchanges > SHARED_INSERTIONS for other in others), \
        [(o.name, o.exchanges, dict(o.errors)) for o in others]


def test_a_reset_by_another_program_restarts_the_read(backend, slots, monkeypatch):
    """SCARD_W_RESET_CARD mid-read: the read starts again from the SELECT; a card that keeps
    being reset ends, after the bounded restarts, in read_interrupted."""
    card = insert(backend, slots, VirtualCard.demo(0))
    real = pcsc.scard.SCardTransmit
    resets = {"left": 2, "seen": 0}

    def reset_twice(handle, protocol, apdu):
        if apdu[:2] == [0x80, 0xB0] and resets["left"]:
            resets["left"] -= 1
            resets["seen"] += 1
            return pcsc.scard.SCARD_W_RESET_CARD, []
        return real(handle, protocol, apdu)

    monkeypatch.setattr(pcsc.scard, "SCardTransmit", reset_twice)
    result = read_exclusive(backend, card.reader)
    assert result.text == demo_profile(0).text and resets["seen"] == 2

    resets["left"] = 10 ** 6
    with pytest.raises(ReadInterrupted) as err:
        read_exclusive(backend, card.reader)
    assert err.value.code == "read_interrupted" and not isinstance(err.value, CardReset)


def test_a_real_reset_before_our_transaction_is_reconnected(backend, slots):
    """Another program resets the card (SCardReconnect with RESET) between our connect
    and our transaction: the agent reconnects and reads the card whole."""
    from smartcard import scard

    card = insert(backend, slots, VirtualCard.demo(2))
    channel = backend.connect(card.reader)
    try:
        _, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        _, handle, _ = scard.SCardConnect(context, card.reader, scard.SCARD_SHARE_SHARED,
                                          scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1)
        hresult, _ = scard.SCardReconnect(handle, scard.SCARD_SHARE_SHARED,
                                          scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
                                          scard.SCARD_RESET_CARD)
        assert hresult == scard.SCARD_S_SUCCESS
        scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(context)
        channel.begin_transaction()
        from agent.card.session import read_card
        result = read_card(channel.transmit, channel.atr)
        channel.end_transaction()
    finally:
        channel.close()
    assert result.text == demo_profile(2).text and result.photo == demo_profile(2).photo


def test_a_read_spoiled_once_is_read_again(backend, slots, monkeypatch):
    """A one-off interleaving that corrupts the citizen id: read again, served right."""
    card = insert(backend, slots, VirtualCard.demo(0))
    real = pcsc.scard.SCardTransmit
    spoiled = {"left": 1}

    def spoil_text(handle, protocol, apdu):
        hresult, response = real(handle, protocol, apdu)
        if apdu[:2] == [0x00, 0xC0] and apdu[4] == 0xFF and spoiled["left"]:
            spoiled["left"] -= 1
            response = [*response[:4], ord("9"), *response[5:]]     # one digit of the id
        return hresult, response

    monkeypatch.setattr(pcsc.scard, "SCardTransmit", spoil_text)
    texts = []
    result = read_exclusive(backend, card.reader, on_text=texts.append)
    assert spoiled["left"] == 0
    assert result.text.citizen_id_valid and result.text == demo_profile(0).text
    assert [t.text.citizen_id for t in texts] == [demo_profile(0).text.citizen_id]


# -- the readers' quirks -------------------------------------------------------------------------

def test_transient_connect_errors_are_retried_with_a_short_backoff(backend, slots, monkeypatch):
    """Removed right after insertion (Alcor AK9563), a lost link on a swap (Windows): the
    connect is tried again after short pauses, and the read goes on."""
    card = insert(backend, slots, VirtualCard.demo(1))
    real = pcsc.scard.SCardConnect
    answers = [pcsc.scard.SCARD_W_REMOVED_CARD, pcsc.SCARD_E_COMM_ERROR]

    def flaky(context, reader, share, protocols):
        if answers:
            return answers.pop(0), 0, 0
        return real(context, reader, share, protocols)

    backend.settle = 0.02
    monkeypatch.setattr(pcsc.scard, "SCardConnect", flaky)
    assert read_exclusive(backend, card.reader).text == demo_profile(1).text
    assert answers == []


def test_a_sharing_violation_on_a_fast_reinsert_is_waited_out(backend, slots):
    """Another program holds the card exclusively for a moment: a real
    SCARD_E_SHARING_VIOLATION from pcscd, retried until it lets go."""
    card = insert(backend, slots, VirtualCard.demo(0), slot=1)
    assert hold_exclusive(card.reader, 0.3).wait(5)
    backend.settle = 0.15
    assert read_exclusive(backend, card.reader).text == demo_profile(0).text


def test_a_command_that_hangs_is_not_repeated_on_its_handle(backend, slots):
    """The 5th command hangs for 1.5 s, the transmit timeout is 0.4 s: the agent reconnects
    and reads again from the SELECT; the command that hung is never sent again before."""
    logic = HangingCard(SimulatedCard(encode_card(demo_profile(0))), hang_at=5, hang_for=1.5)
    card = insert(backend, slots, VirtualCard(logic))
    backend.transmit_timeout = 0.4
    result = read_exclusive(backend, card.reader)
    assert result.text == demo_profile(0).text and result.photo == demo_profile(0).photo
    hung = logic.commands[4]
    assert logic.commands[5][:2] == b"\x00\xa4"            # the restart's SELECT comes next
    assert hung not in logic.commands[5:6]


def test_a_card_that_never_answers_is_card_unresponsive(backend, slots):
    logic = HangingCard(SimulatedCard(encode_card(demo_profile(0))), hang_at=3, hang_for=None)
    card = insert(backend, slots, VirtualCard(logic))
    backend.transmit_timeout = 0.3
    backend.connect_timeout = 1.0
    try:
        with pytest.raises(CardUnresponsive) as err:
            read_exclusive(backend, card.reader)
        assert err.value.code == "card_unresponsive"
        assert logic.commands.count(logic.commands[2]) == 1      # never repeated
    finally:
        logic.release()


def test_a_reader_that_runs_get_response_itself(backend, slots):
    """Data and 90 00 at once: one APDU per read, the card read whole."""
    card = insert(backend, slots, VirtualCard(ReaderFetches(
        SimulatedCard(encode_card(demo_profile(1))))))
    result = read_exclusive(backend, card.reader)
    assert result.text == demo_profile(1).text and result.photo == demo_profile(1).photo
    reads = 1 + 1 + -(-len(demo_profile(1).photo) // 255)            # text: 2 reads
    assert result.stats.apdus == 1 + 1 + reads


@pytest.mark.parametrize("atr", [ATR_NO_TH_NID, ATR_T1], ids=["no-TH-NID", "T1"])
def test_cards_are_known_by_their_applet_not_their_atr(backend, slots, atr):
    card = insert(backend, slots, served(demo_profile(0), atr=atr))
    with backend.connect(card.reader) as channel:
        protocol = channel._protocol                      # what pcscd negotiated
    result = read_exclusive(backend, card.reader)
    assert result.text == demo_profile(0).text and result.atr == atr
    if atr == ATR_T1:
        assert protocol == pcsc.scard.SCARD_PROTOCOL_T1


def test_a_reader_that_refuses_t0_and_t1_is_offered_raw(backend, slots, monkeypatch):
    """An old reader (ACR38U-SPC) negotiates RAW: the connect offers it when T=0|T=1 fail."""
    card = insert(backend, slots, VirtualCard.demo(0))
    real = pcsc.scard.SCardConnect
    offered = []

    def old_reader(context, reader, share, protocols):
        offered.append(protocols)
        if not protocols & pcsc.scard.SCARD_PROTOCOL_RAW:
            return pcsc.scard.SCARD_E_PROTO_MISMATCH, 0, 0
        return real(context, reader, share, protocols)

    monkeypatch.setattr(pcsc.scard, "SCardConnect", old_reader)
    assert read_exclusive(backend, card.reader).text == demo_profile(0).text
    assert offered[-1] & pcsc.scard.SCARD_PROTOCOL_RAW


# -- what real cards hold ------------------------------------------------------------------------

def _profile(**changes) -> CardProfile:
    demo = demo_profile(0)
    photo = changes.pop("photo", demo.photo)
    text = replace(demo.text, **changes)
    return CardProfile(replace(text, photo_length=len(photo)), photo)


CONTENTS = {
    "all-spaces address": _profile(address=Address(("",) * 8)),
    "empty slots": _profile(address=Address(("12", "", "", "", "", "ตำบลบางกระสอ",
                                             "อำเภอเมืองนนทบุรี", "จังหวัดนนทบุรี"))),
    "Bangkok": _profile(address=Address(("1/2", "", "", "ซอยเจริญกรุง 47", "ถนนเจริญกรุง",
                                         "แขวงสี่พระยา", "เขตบางรัก", "กรุงเทพมหานคร"))),
    "three-part name": _profile(name_th=Name("นาย", "สมชาย", "", "ใจดี")),
    "four-part name": _profile(name_th=Name("นาง", "สมศรี", "มารี", "ทองดี"),
                               name_en=Name("Mrs.", "Somsri", "Maree", "Thongdee")),
    "month and day 00, lifelong": _profile(birth_date=CardDate("25230000"),
                                           expiry_date=CardDate("99999999")),
    "0x20 at chunk edges": _profile(photo=jpeg_with_spaces_at_chunk_edges()),
}


@pytest.mark.parametrize("which", list(CONTENTS))
def test_odd_contents_read_whole_through_pcscd(backend, slots, which):
    profile = CONTENTS[which]
    card = insert(backend, slots, served(profile, apdu_delay=0.0), slot=1)
    result = read_exclusive(backend, card.reader)
    assert result.text == profile.text and result.photo == profile.photo
    out = result.to_json()
    if which == "Bangkok":
        assert (out["address"]["subdistrict"], out["address"]["district"],
                out["address"]["province"]) == ("สี่พระยา", "บางรัก", "กรุงเทพมหานคร")
    if which == "all-spaces address":
        assert out["address"]["full"] == "" and out["address"]["parts"] == [""] * 8
    if which == "month and day 00, lifelong":
        assert out["birth_date"]["precision"] == "year" and out["expiry_date"]["lifelong"]


def test_a_name_with_no_middle_slot_through_pcscd(backend, slots):
    """``prefix#first#last`` (three slots, not four): the last name stays the last name."""
    image = bytearray(encode_card(demo_profile(0)))
    name = "นาย#สมชาย#ใจดี".encode("cp874").ljust(100, b" ")
    image[0x0011:0x0075] = name
    card = insert(backend, slots, VirtualCard.from_image(bytes(image)))
    out = read_exclusive(backend, card.reader).to_json()
    assert (out["name_th"]["first"], out["name_th"]["middle"], out["name_th"]["last"]) == \
        ("สมชาย", "", "ใจดี")
