"""The card protocol's edges, command by command, with the bytes docs/reference.md gives.

Added where mutation testing (scripts/mutation.sh) showed agent/card/* could change
unnoticed: the boundaries of a read command, the 61xx/6Cxx turns with 00 meaning 256, the
P2 switch in both directions, the three laser id forms' exact commands, what the simulated
card answers to each wrong command, the photo length's usable range, and the read's own
statistics (on a fake clock: no timing is asserted against the real one).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest

from agent.card import layout as L
from agent.card.apdu import (
    Conversation,
    get_response,
    get_response_p2,
    read_command,
    select,
    sw_of,
)
from agent.card.decode import decode_laser_id, decode_name, decode_photo
from agent.card.demo import demo_profile
from agent.card.encode import encode_card, encode_field, encode_nhso
from agent.card.session import (
    CardRead,
    ReadStats,
    card_generation,
    photo_length_of,
    read_card,
    read_optional_applets,
    run_script,
)
from agent.card.simulator import ATR_3B67, ATR_3B79, SimulatedCard, sw
from agent.card.values import (
    Address,
    CardDate,
    CardProfile,
    CardText,
    Gender,
    Name,
    NhsoCoverage,
    mask_citizen_id,
)
from agent.errors import (
    ApduFailed,
    CardDataInvalid,
    CardRemoved,
    LaserUnavailable,
    NotThaiIdCard,
)

MOI_SELECT = bytes.fromhex("00A4040008A000000054480001")      # docs/reference.md, "Framing"
LASER_SELECT = bytes.fromhex("00A4040008A000000084060002")
OK = b"\x90\x00"


def drive(script: Any, answers: list[bytes]) -> tuple[list[bytes], Any]:
    """Run a sans-I/O script on canned answers: the commands it sent and what it returned."""
    sent = [next(script)]
    try:
        for answer in answers:
            sent.append(script.send(answer))
    except StopIteration as done:
        return sent, done.value
    raise AssertionError(f"script still running after {len(answers)} answers: {sent[-1].hex()}")


# -- commands ---------------------------------------------------------------------------
def test_the_documented_commands() -> None:
    assert select(L.MOI_AID) == MOI_SELECT
    assert read_command(0x00E1, 1) == bytes.fromhex("80B000E1020001")      # the gender byte
    assert read_command(0x0000, 0xFF) == bytes.fromhex("80B000000200FF")
    assert read_command(0xFFFF, 1) == bytes.fromhex("80B0FFFF020001")
    assert get_response(0x01, 0x0D) == bytes.fromhex("00C000010D")
    assert get_response(0x00, 0x100) == bytes.fromhex("00C0000000")          # Le 00 is 256


@pytest.mark.parametrize("offset, length", [(0, 0), (0, 256), (-1, 1), (0x10000, 1)])
def test_a_read_command_out_of_range_is_refused(offset: int, length: int) -> None:
    with pytest.raises(ValueError):
        read_command(offset, length)


def test_status_word_needs_two_bytes() -> None:
    assert sw_of(b"\x90\x00") == 0x9000 and sw_of(b"ab\x61\x0d") == 0x610D
    with pytest.raises(CardDataInvalid, match="1 bytes"):
        sw_of(b"\x90")


@pytest.mark.parametrize("atr, p2", [(ATR_3B67, 1), (b"\x3b\x68\x67", 0), (b"\x3b", 0),
                                     (b"", 0), (b"\x3b\x67", 1)])
def test_p2_rule_looks_at_the_first_two_atr_bytes_only(atr: bytes, p2: int) -> None:
    assert get_response_p2(atr) == p2 and Conversation(atr).p2 == p2


# -- SELECT -----------------------------------------------------------------------------
@pytest.mark.parametrize("answer", [b"\x61\x0a", OK, b"\x61\x00"])
def test_select_succeeds_on_61xx_and_9000(answer: bytes) -> None:
    sent, result = drive(Conversation(ATR_3B79).select_script(L.MOI_AID), [answer])
    assert sent == [MOI_SELECT] and result is None


def test_select_failures_are_typed_with_their_step() -> None:
    with pytest.raises(NotThaiIdCard, match="select: status word 6A82"):
        drive(Conversation(ATR_3B79).select_script(L.MOI_AID), [b"\x6a\x82"])
    with pytest.raises(ApduFailed) as err:
        drive(Conversation(ATR_3B79).select_script(L.MOI_AID), [b"\x69\x82"])
    assert (err.value.sw, err.value.step) == (0x6982, "select")
    with pytest.raises(ApduFailed) as err:
        drive(Conversation(ATR_3B79).select_script(L.NHSO_AID, "select_nhso"), [b"\x62\x83"])
    assert (err.value.sw, err.value.step) == (0x6283, "select_nhso")


# -- READ and GET RESPONSE ----------------------------------------------------------------
def test_read_follows_the_cards_61xx_length_not_the_one_asked() -> None:
    sent, data = drive(Conversation(ATR_3B79).read_script(0x0004, 13, "t"),
                       [b"\x61\x0d", b"1101700203450" + OK])
    assert sent == [bytes.fromhex("80B0000402000D"),
                    bytes.fromhex("00C000000D")]
    assert data == b"1101700203450"
    # A card that prepared 10 of the 13 bytes: the fetch asks for those 10.
    sent, _ = drive(Conversation(ATR_3B79).read_script(0x0004, 13, "t"),
                    [b"\x61\x0a", b"0123456789" + b"\x61\x03", b"abc" + OK])
    assert sent[1:] == [bytes.fromhex("00C000000A"), bytes.fromhex("00C0000003")]


def test_61_00_and_6c_00_mean_256_bytes() -> None:
    conv = Conversation(ATR_3B79)
    sent, data = drive(conv.fetch_script(0xFF, "t"),
                       [b"x" * 10 + b"\x61\x00", b"\x6c\x00", b"y" * 245 + OK])
    assert sent == [bytes.fromhex("00C00000FF"), bytes.fromhex("00C0000000"),
                    bytes.fromhex("00C0000000")]
    assert data == b"x" * 10 + b"y" * 245
    # READ answered 61 00: fetch what was asked (255), not 0.
    sent, data = drive(Conversation(ATR_3B79).read_script(0, 0xFF, "t"),
                       [b"\x61\x00", b"z" * 255 + OK])
    assert sent[1] == bytes.fromhex("00C00000FF") and data == b"z" * 255


def test_data_at_once_longer_than_asked_is_cut_and_one_byte_is_data() -> None:
    _, data = drive(Conversation(ATR_3B79).read_script(0, 3, "t"), [b"abcdef" + OK])
    assert data == b"abc"
    _, data = drive(Conversation(ATR_3B79).read_script(0x00E1, 1, "t"), [b"2" + OK])
    assert data == b"2"


def test_an_empty_9000_to_a_read_is_a_failure_of_that_step() -> None:
    with pytest.raises(ApduFailed) as err:
        drive(Conversation(ATR_3B79).read_script(0, 3, "read_text"), [OK])
    assert (err.value.sw, err.value.step) == (0x9000, "read_text")


@pytest.mark.parametrize("atr, first, second", [(ATR_3B79, 0x00, 0x01), (ATR_3B67, 0x01, 0x00)])
def test_p2_is_switched_once_then_kept(atr: bytes, first: int, second: int) -> None:
    conv = Conversation(atr)
    sent, data = drive(conv.fetch_script(3, "t"), [b"\x6b\x00", b"abc" + OK])
    assert [c[3] for c in sent] == [first, second] and data == b"abc"
    assert conv.p2 == second                       # the next read starts with the one that worked
    sent, _ = drive(conv.fetch_script(2, "t"), [b"de" + OK])
    assert sent[0][3] == second
    # Refused with both P2: the second refusal is the step's failure, not another switch.
    conv = Conversation(atr)
    with pytest.raises(ApduFailed) as err:
        drive(conv.fetch_script(3, "read_photo"), [b"\x6a\x86", b"\x6b\x00"])
    assert (err.value.sw, err.value.step) == (0x6B00, "read_photo")


def test_a_card_that_never_finishes_is_invalid_after_eight_turns() -> None:
    conv = Conversation(ATR_3B79)
    script = conv.fetch_script(3, "read_text")
    next(script)
    for _ in range(7):
        script.send(b"\x6c\x03")
    with pytest.raises(CardDataInvalid, match="read_text: card kept asking"):
        script.send(b"\x6c\x03")


def test_span_reads_continue_at_the_right_offsets() -> None:
    card = SimulatedCard(encode_card(demo_profile(0)))
    conv = Conversation(card.atr)
    sent: list[bytes] = []

    def transmit(apdu: bytes) -> bytes:
        sent.append(apdu)
        return card.process(apdu)

    run_script(conv.select_script(L.MOI_AID), transmit, conv)
    data = run_script(conv.read_span_script(0x0100, 0x0200, "t"), transmit, conv)
    reads = [c for c in sent if c[:2] == b"\x80\xb0"]
    assert [c.hex() for c in reads] == ["80b001000200ff",
                                        "80b001ff0200ff", "80b002fe020002"]
    assert data == card.moi_image[0x0100:0x0300] and conv.apdus == 1 + 2 * 3


# -- the laser id ------------------------------------------------------------------------
LASER_RECORD = bytes(range(1, 8)) + b"ME0123456789" + bytes(4)    # 23 bytes, id at 7-22


def test_laser_forms_exact_commands() -> None:
    # Form 1, the header alone: 61 17, then GET RESPONSE of the 23 bytes the card says.
    conv = Conversation(ATR_3B79)
    sent, (data, form) = drive(conv.laser_id_script(),
                               [b"\x61\x0a", b"\x61\x17", LASER_RECORD + OK])
    assert sent == [LASER_SELECT, bytes.fromhex("80000000"), bytes.fromhex("00C0000017")]
    assert (data, form) == (LASER_RECORD, bytes.fromhex("80000000"))
    # Form 2: 80 00 00 00 07 is fetched with GET RESPONSE 10 whatever 61xx says.
    sent, (data, form) = drive(Conversation(ATR_3B79).laser_id_script(),
                               [OK, b"\x6d\x00", b"\x61\x17", b"ME0123456789\0\0\0\0" + OK])
    assert sent[1:] == [bytes.fromhex("80000000"), bytes.fromhex("8000000007"),
                        bytes.fromhex("00C0000010")]
    assert form == bytes.fromhex("8000000007") and decode_laser_id(data) == "ME0123456789"
    # Form 3 with 61 00: a fetch of 256.
    sent, (_, form) = drive(Conversation(ATR_3B79).laser_id_script(),
                            [OK, b"\x6d\x00", b"\x6d\x00", b"\x61\x00", LASER_RECORD + OK])
    assert sent[3:] == [bytes.fromhex("80000000FF"), bytes.fromhex("00C0000000")]
    assert form == bytes.fromhex("80000000FF")


def test_laser_refusals_are_listed_form_by_form() -> None:
    conv = Conversation(ATR_3B79)
    # form 1: 61 17 but GET RESPONSE refused; form 2: 61 17 and no data; form 3: 6D 00
    with pytest.raises(LaserUnavailable) as err:
        drive(conv.laser_id_script(),
              [OK, b"\x61\x17", b"\x6f\x00", b"\x61\x17", OK, b"\x6d\x00"])
    assert err.value.detail == ("every laser id command refused: 80 00 00 00: 6F00; "
                                "80 00 00 00 07: 6117; 80 00 00 00 FF: 6D00")


def test_no_laser_applet_says_why() -> None:
    with pytest.raises(LaserUnavailable) as err:
        drive(Conversation(ATR_3B79).laser_id_script(), [b"\x6a\x82"])
    assert err.value.detail == "no laser applet (select_laser: status word 6A82)"
    with pytest.raises(LaserUnavailable) as err:
        drive(Conversation(ATR_3B79).laser_id_script(), [b"\x69\x85"])
    assert err.value.detail == "no laser applet (select_laser: status word 6985)"


def test_laser_answer_forms_decode() -> None:
    assert decode_laser_id(LASER_RECORD) == "ME0123456789"
    assert decode_laser_id(LASER_RECORD + b"extra") == "ME0123456789"   # the record, not more
    assert decode_laser_id(b"JT1234567890\0\0\0\0") == "JT1234567890"
    assert decode_laser_id(bytes(7) + b"AB\xff" + bytes(13)) == "AB\ufffd"
    with pytest.raises(CardDataInvalid, match="17 bytes"):
        decode_laser_id(b"x" * 17)
    with pytest.raises(CardDataInvalid, match="empty"):
        decode_laser_id(bytes(16))


def test_laser_error_of_a_read_keeps_the_reason() -> None:
    profile = demo_profile(0)
    card = SimulatedCard(encode_card(profile), laser_answer=b"\x00" * 23)   # padding only
    result = read_card(card.process, card.atr, photo=False, laser=True)
    assert result.laser_id is None and result.laser_command is None
    assert result.laser_error is not None and result.laser_error.detail == \
        "laser id answer is empty"
    applets = read_optional_applets(card.process, card.atr, laser=True)
    assert applets.laser_asked and not applets.nhso_asked
    assert applets.laser_error is not None and applets.laser_error.code == "laser_unavailable"


# -- the simulated card answers like a card -----------------------------------------------
def simulated() -> SimulatedCard:
    return SimulatedCard(encode_card(demo_profile(0)))


def test_simulator_status_words() -> None:
    card = simulated()
    assert sw(0x6A82) == b"\x6a\x82"
    assert card.process(b"\x00\xa4\x04") == b"\x67\x00"                    # too short
    assert card.process(bytes.fromhex("80B0000002000D")) == b"\x69\x86"    # nothing selected
    assert card.process(bytes.fromhex("00C000000D")) == b"\x69\x85"        # nothing prepared
    assert card.process(bytes.fromhex("00A4000008A000000054480001")) == b"\x6a\x86"
    assert card.process(bytes.fromhex("00A40400")) == b"\x6a\x86"  # no length byte
    assert card.process(bytes.fromhex("00A4040008A000000054480099")) == b"\x6a\x82"
    assert card.process(MOI_SELECT) == b"\x61\x0a"
    assert card.process(bytes.fromhex("00C000000A")) == b"\x69\x85"        # select has no data
    assert card.process(bytes.fromhex("80B0000002000D00")) == b"\x67\x00"  # 8 bytes
    assert card.process(bytes.fromhex("80B0000003000D")) == b"\x67\x00"    # not 02
    assert card.process(bytes.fromhex("80B0000002010D")) == b"\x67\x00"    # not 00
    assert card.process(bytes.fromhex("80B01626020001")) == b"\x61\x01"
    assert card.process(bytes.fromhex("00C0000001")) == card.moi_image[-1:] + OK
    assert card.process(bytes.fromhex("80B01626020002")) == b"\x6b\x00"
    assert card.process(bytes.fromhex("B0B0000002000D")) == b"\x6e\x00"    # class B0
    assert card.process(bytes.fromhex("00B2000000")) == b"\x6d\x00"        # instruction B2
    assert card.process(bytes.fromhex("80CA000000")) == b"\x6d\x00"
    assert card.apdus == 17


def test_simulator_get_response_le_and_p2() -> None:
    card = simulated()                               # strict about P2 unless told otherwise
    card.process(MOI_SELECT)
    assert card.process(bytes.fromhex("80B0000402000D")) == b"\x61\x0d"
    assert card.process(bytes.fromhex("00C000010D")) == b"\x6b\x00"       # P2 01: not a 3B 67
    assert card.process(bytes.fromhex("00C00000")) == b"\x6c\x0d"         # no Le at all
    assert card.process(bytes.fromhex("00C000000C")) == b"\x6c\x0d"
    assert card.process(bytes.fromhex("00C000000D")) == card.moi_image[4:17] + OK
    assert card.process(bytes.fromhex("00C000000D")) == b"\x69\x85"       # fetched already
    lenient = replace(simulated(), strict_p2=False)
    lenient.process(MOI_SELECT)
    lenient.process(bytes.fromhex("80B0000402000D"))
    assert lenient.process(bytes.fromhex("00C000010D")) == lenient.moi_image[4:17] + OK
    card.process(MOI_SELECT)
    card.process(bytes.fromhex("80B0000402000D"))
    card.reset()                                     # a new insertion forgets both
    assert card.process(bytes.fromhex("00C000000D")) == b"\x69\x85"
    assert card.process(bytes.fromhex("80B0000402000D")) == b"\x69\x86"


def test_simulator_applets() -> None:
    cov = NhsoCoverage("UCS", "89", "10699", "10699", "1", CardDate("25660101"),
                       CardDate("25700101"), CardDate("25660101"), "0")
    card = SimulatedCard(encode_card(demo_profile(0)), nhso_image=encode_nhso(cov),
                         laser_answer=LASER_RECORD)
    assert card.process(bytes.fromhex("00A4040008A000000054480083")) == b"\x61\x0a"
    assert card.process(LASER_SELECT) == b"\x61\x0a"
    assert card.process(bytes.fromhex("80000000")) == b"\x61\x17"
    assert card.process(bytes.fromhex("00C0000017")) == LASER_RECORD + OK
    card.process(MOI_SELECT)
    assert card.process(bytes.fromhex("80000000")) == b"\x6d\x00"       # not the laser applet
    stranger = SimulatedCard(card.moi_image, is_thai_id=False, nhso_image=card.nhso_image)
    assert stranger.process(MOI_SELECT) == b"\x6a\x82"
    assert stranger.process(bytes.fromhex("00A4040008A000000054480083")) == b"\x6a\x82"
    assert stranger.process(LASER_SELECT) == b"\x6a\x82"
    assert SimulatedCard(b"").process(LASER_SELECT) == b"\x6a\x82"       # no laser applet


# -- photo length ---------------------------------------------------------------------------
@pytest.mark.parametrize("stated, usable", [(3, False), (4, True), (5118, True),
                                            (5119, False), (0x0102, True)])
def test_photo_length_usable_range(stated: int, usable: bool) -> None:
    block = bytearray(L.TEXT_BLOCK.length)
    block[0x0179:0x017B] = stated.to_bytes(2, "big")
    assert photo_length_of(bytes(block)) == (stated if usable else None)


@pytest.mark.parametrize("stated", [4, 5118])
def test_a_stated_length_at_the_bounds_is_read_as_stated(stated: int) -> None:
    demo = demo_profile(0)
    card = SimulatedCard(encode_card(CardProfile(replace(demo.text, photo_length=stated),
                                                 demo.photo)))
    sent: list[bytes] = []

    def transmit(apdu: bytes) -> bytes:
        sent.append(apdu)
        return card.process(apdu)

    result = read_card(transmit, card.atr)
    assert result.photo == demo.photo
    photo_reads = [c for c in sent if c[:2] == b"\x80\xb0"
                   and L.PHOTO.offset <= (c[2] << 8 | c[3]) < L.PHOTO.end]
    # The stated bytes first, in their own reads (the address was read before them).
    assert (photo_reads[0][2] << 8 | photo_reads[0][3]) == L.PHOTO.offset
    assert photo_reads[0][6] == min(stated, 0xFF)
    assert any((c[2] << 8 | c[3]) == L.TAIL_BLOCK.offset for c in sent if c[:2] == b"\x80\xb0")


# -- the read's statistics on a fake clock ---------------------------------------------------
class Clock:
    """perf_counter for agent.card.session: each call is 1 s after the previous one."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_read_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    import agent.card.session as session

    clock = Clock()
    monkeypatch.setattr(session, "time", SimpleNamespace(perf_counter=clock))
    profile = demo_profile(0)
    card = SimulatedCard(encode_card(profile))
    seen: list[dict[str, Any]] = []
    result = read_card(card.process, card.atr, on_text=lambda r: seen.append(r.stats.to_json()))
    # perf_counter calls: start (1), text done (2), photo start (3), photo done (4), end (5)
    assert seen == [{"apdus": 7, "text_apdus": 7, "text_ms": 1000.0, "photo_ms": 0.0,
                     "total_ms": 0.0}]
    stats = result.stats.to_json()
    assert stats == {"apdus": result.stats.apdus, "text_apdus": 7, "text_ms": 1000.0,
                     "photo_ms": 1000.0, "total_ms": 4000.0}
    assert result.stats.apdus == card.apdus > 7
    assert ReadStats(1, 1, 1.23456, 2.34567, 3.45678).to_json() == {
        "apdus": 1, "text_apdus": 1, "text_ms": 1.23, "photo_ms": 2.35, "total_ms": 3.46}


def test_the_text_handed_over_never_changes_under_its_holder() -> None:
    """The core stores the handed-over text and serves it while the photo is read: the
    rest of the read must not fill a photo or other counts into it behind the core's back."""
    profile = demo_profile(0)
    card = SimulatedCard(encode_card(profile))
    handed: list[CardRead] = []
    result = read_card(card.process, card.atr, on_text=handed.append)
    (text,) = handed
    assert result.photo == profile.photo and result.stats.apdus > 7
    assert text.photo is None and text.text == result.text
    shown = text.stats.to_json()
    assert (shown["apdus"], shown["text_apdus"], shown["photo_ms"], shown["total_ms"]) == \
        (7, 7, 0.0, 0.0)


def test_atr_generation() -> None:
    assert card_generation(ATR_3B79) == "TH NID 10"
    assert card_generation(b"TH NID 6") == "TH NID 6"                  # the marker at 0
    assert card_generation(b"\x3b\x68TH NID \xff ") == "TH NID \ufffd"
    assert card_generation(bytes.fromhex("3B6800000073C84000009000")) == ""


def test_card_json_optional_parts() -> None:
    profile = demo_profile(0)
    card = SimulatedCard(encode_card(profile))
    plain = read_card(card.process, card.atr, photo=False).to_json()
    assert plain["photo"] is None and "photo_error" not in plain
    assert "nhso_applet" not in plain and "laser_id" not in plain and "laser_error" not in plain
    assert plain["card"]["atr"] == ATR_3B79.hex(" ").upper()
    with_photo = read_card(card.process, card.atr).to_json(photo_b64=True)
    assert with_photo["photo"]["size"] == len(profile.photo)
    assert with_photo["photo"]["format"] == "image/jpeg"
    assert "base64" not in read_card(card.process, card.atr).to_json()["photo"]


def test_a_removed_card_during_the_photo_ends_the_read() -> None:
    profile = demo_profile(0)
    card = SimulatedCard(encode_card(profile))
    count = 0

    def transmit(apdu: bytes) -> bytes:
        nonlocal count
        count += 1
        if count > 9:
            raise CardRemoved()
        return card.process(apdu)

    seen: list[Any] = []
    with pytest.raises(CardRemoved):
        read_card(transmit, card.atr, on_text=seen.append)
    assert len(seen) == 1                              # the text had been handed over


# -- values ---------------------------------------------------------------------------------
@pytest.mark.parametrize("raw, precision, iso", [
    ("05440101", "day", "0001-01-01"),        # BE 544 = year 1, the first valid year
    ("05430101", "invalid", None),            # year 0
    ("05430100", "invalid", None),
    ("05440100", "month", "0001-01"),
    ("25301231", "day", "1987-12-31"),
    ("25301200", "month", "1987-12"),
    ("  253001", "invalid", None),
])
def test_card_date_bounds(raw: str, precision: str, iso: str | None) -> None:
    assert (CardDate(raw).precision, CardDate(raw).iso) == (precision, iso)


def test_gender_unknown_labels() -> None:
    assert Gender("").to_json() == {"raw": "", "en": "unknown", "th": "ไม่ระบุ"}
    assert Gender("0").th == "ไม่ระบุ" and Gender("2").th == "หญิง"


def test_names() -> None:
    assert decode_name(b"Mr.#John#Doe") == Name("Mr.", "John", "", "Doe")
    assert decode_name(b"#John") == Name("", "John", "", "")
    assert Name("นาย", "สมชาย", "", "").full(thai=True) == "นายสมชาย"
    assert Name("", "Somchai", "", "Jaidee").full(thai=False) == "Somchai Jaidee"
    assert Name("Mr.", "", "", "Jaidee").full(thai=False) == "Mr. Jaidee"
    assert Name("นาย", "", "กลาง", "ใจดี").full(thai=True) == "นายกลาง ใจดี"
    assert Name("Mr.", "A", "B", "C").to_json(thai=False) == {
        "prefix": "Mr.", "first": "A", "middle": "B", "last": "C", "full": "Mr. A B C"}


def test_address_middle_parts() -> None:
    a = Address(("1", "หมู่ที่ 2", "หมู่ที่ 3", "อาคารเอ", "ชั้น 4", "ตำบลก", "อำเภอข", "จังหวัดค"))
    j = a.to_json()
    assert j["moo"] == "2" and j["other"] == "หมู่ที่ 3 อาคารเอ ชั้น 4"
    assert (j["trok"], j["soi"], j["road"]) == ("", "", "")
    bare = Address(("1", "", "", "", "", "บางพูด", "ปากเกร็ด", "นนทบุรี")).to_json()
    assert (bare["subdistrict"], bare["district"], bare["province"]) == \
        ("บางพูด", "ปากเกร็ด", "นนทบุรี")
    assert bare["other"] == "" and bare["full"] == "1 บางพูด ปากเกร็ด นนทบุรี"
    assert Address().raw == "#######"


def test_mask_of_an_id_that_is_not_13_characters() -> None:
    assert mask_citizen_id("123") == "xxx" and mask_citizen_id("") == ""


# -- encoder bounds -------------------------------------------------------------------------
def test_encoder_refuses_what_a_card_cannot_hold() -> None:
    assert encode_field(L.PHOTO_LENGTH, 0) == b"\x00\x00"
    assert encode_field(L.PHOTO_LENGTH, 0xFFFF) == b"\xff\xff"
    for bad in (-1, 0x10000):
        with pytest.raises(ValueError, match="photo_length"):
            encode_field(L.PHOTO_LENGTH, bad)
    with pytest.raises(ValueError, match="name_en"):
        encode_field(L.NAME_EN, Name("Mr.", "A#B", "", "C"))
    with pytest.raises(ValueError, match="address"):
        encode_field(L.ADDRESS, Address(("1#2",) + ("",) * 7))
    with pytest.raises(ValueError, match="address"):
        encode_field(L.ADDRESS, Address(("1",) * 7))
    with pytest.raises(ValueError, match="citizen_id"):
        encode_field(L.CITIZEN_ID, "1" * 14)
    assert encode_field(L.CITIZEN_ID, "1" * 13) == b"1" * 13
    with pytest.raises(ValueError, match="photo"):
        encode_field(L.PHOTO, b"\xff\xd8" + bytes(L.PHOTO.length))
    assert encode_field(L.PHOTO, b"\xff\xd8\xff\xd9") == b"\xff\xd8\xff\xd9" + bytes(5114)
    assert encode_field(L.GENDER, Gender("1")) == b"1"
    assert encode_field(L.ISSUE_DATE, CardDate("2566")) == b"2566    "


def test_nhso_block_of_the_wrong_size_says_its_size() -> None:
    from agent.card.decode import decode_nhso

    with pytest.raises(CardDataInvalid, match=r"^NHSO block is 3 bytes, expected 346$"):
        decode_nhso(b"UCS")


def test_decode_photo_refusals_say_which() -> None:
    with pytest.raises(CardDataInvalid, match="5117 bytes"):
        decode_photo(b"\xff\xd8" + bytes(5115))
    with pytest.raises(CardDataInvalid, match="JPEG marker"):
        decode_photo(bytes(L.PHOTO.length))
    with pytest.raises(CardDataInvalid, match=r"^photo has no JPEG end marker$"):
        decode_photo(b"\xff\xd8" + bytes(L.PHOTO.length - 2))


def test_laser_answers_that_are_not_data() -> None:
    # Form 1 says 90 00 with no data: not an answer; form 2 then gives the id.
    sent, (data, form) = drive(Conversation(ATR_3B79).laser_id_script(),
                               [OK, OK, b"\x61\x10", b"JT1234567890\0\0\0\0" + OK])
    assert form == bytes.fromhex("8000000007") and data == b"JT1234567890\0\0\0\0"
    # One byte of data at once is data.
    _, (data, form) = drive(Conversation(ATR_3B79).laser_id_script(), [OK, b"Z" + OK])
    assert (data, form) == (b"Z", bytes.fromhex("80000000"))


def test_laser_fetch_refused_on_the_third_form_is_listed_in_capitals() -> None:
    with pytest.raises(LaserUnavailable) as err:
        drive(Conversation(ATR_3B79).laser_id_script(),
              [OK, b"\x6d\x00", b"\x6d\x00", b"\x61\x17", b"\x6f\x00"])
    assert err.value.detail == ("every laser id command refused: 80 00 00 00: 6D00; "
                                "80 00 00 00 07: 6D00; 80 00 00 00 FF: 6F00")


def test_a_laser_applet_that_never_finishes_names_the_step() -> None:
    class Endless(SimulatedCard):
        def process(self, apdu: bytes) -> bytes:
            if apdu[:2] == b"\x00\xc0" and self._selected == L.LASER_AID:
                return b"\x6c\x17"                  # always "wrong length"
            return super().process(apdu)

    card = Endless(encode_card(demo_profile(0)), laser_answer=LASER_RECORD)
    applets = read_optional_applets(card.process, card.atr, laser=True)
    assert applets.laser_error is not None
    assert applets.laser_error.detail == "laser_id: card kept asking for more turns"


def test_optional_applets_alone_read_only_what_is_asked() -> None:
    cov = NhsoCoverage("UCS", "89", "10699", "10699", "1", CardDate("25660101"),
                       CardDate("25700101"), CardDate("25660101"), "0")
    card = SimulatedCard(encode_card(demo_profile(0)), nhso_image=encode_nhso(cov),
                         laser_answer=LASER_RECORD)
    got = read_optional_applets(card.process, card.atr, nhso=True)
    assert got.nhso == cov and got.nhso_asked and not got.laser_asked and got.laser_id is None
    assert card.apdus == 5                     # select + two reads of the NHSO block
    got = read_optional_applets(card.process, card.atr)
    assert (got.nhso, got.nhso_asked, got.laser_asked) == (None, False, False)


def test_mask_uses_the_first_and_last_digit() -> None:
    assert mask_citizen_id("3456789012345") == "3-4567-xxxxx-xx-5"


# -- the import-time checks that hold the layout and the value classes together ------------
def test_layout_check_refuses_a_table_typed_wrong() -> None:
    f = L.Field
    L._check((f("a", 0, 2), f("b", 2, 3)), 0)                 # contiguous, named once: fine
    L._check((f("a", 4, 2), f("b", 6, 1)), 4)
    with pytest.raises(RuntimeError, match=r"^card layout: two fields share a name$"):
        L._check((f("a", 0, 2), f("a", 2, 3)), 0)
    with pytest.raises(RuntimeError, match=r"^card layout: b at 0x0003, expected 0x0002$"):
        L._check((f("a", 0, 2), f("b", 3, 3)), 0)
    with pytest.raises(RuntimeError, match=r"^card layout: a at 0x0000, expected 0x0004$"):
        L._check((f("a", 0, 2),), 4)
    with pytest.raises(RuntimeError, match=r"^card layout: b at 0x0002"):
        L._check((f("a", 0, 2), f("b", 2, 0)), 0)             # a field of no bytes
    with pytest.raises(RuntimeError, match=r"^card layout: an NHSO agent key is made from two"):
        L._check((f("a", 0, 2, compat=("pid",)), f("b", 2, 3, compat=("pid",))), 0)
    L._check((f("a", 0, 1, compat=("pid", "nation")), f("b", 1, 1, compat=("sex",))), 0)


def test_value_classes_must_name_their_layout_fields() -> None:
    from agent.card import values

    values._check_table(values.NhsoCoverage, L.NHSO_FIELDS)
    values._check_table(values.CardText, L.FIELDS)             # the photo is not an attribute
    with pytest.raises(RuntimeError,
                       match=r"^NhsoCoverage and its layout disagree: \['change_count'\]$"):
        values._check_table(values.NhsoCoverage, L.NHSO_FIELDS[:-1])
    with pytest.raises(RuntimeError, match=r"disagree: \['photo', 'version'\]$"):
        values._check_table(values.CardText, (*L.FIELDS[1:13], replace(L.PHOTO, kind=L.Kind.TEXT),
                                              *L.FIELDS[14:]))


def test_generation_is_read_from_the_first_marker_as_ascii() -> None:
    assert card_generation(b"\x3bTH NID 1 TH NID 2") == "TH NID 1 TH NID 2"
    assert card_generation(b"\x3bTH NID \xc3\xa9") == "TH NID \ufffd\ufffd"   # not UTF-8


def test_the_photo_view_writes_no_text_key() -> None:
    from agent.card.values import view_json

    assert view_json(L.PHOTO, b"\xff\xd8\xff\xd9") == {}


def test_demo_cards_are_whole_fake_people() -> None:
    """Web developers build pages on the demo cards: each is a whole person whose names say
    it is a demo, and card 0 is the one docs/integration.md shows."""
    from agent.api.compat import card_fields
    from agent.card.session import CardRead

    assert demo_profile() == demo_profile(0)
    for variant in range(4):
        text = demo_profile(variant).text
        for name, fake in ((text.name_th, ("ทดสอบ", "ตัวอย่าง")), (text.name_en, ("Demo", "Sample"))):
            assert name.prefix and name.first in fake and name.last and not name.middle
        assert text.citizen_id_valid and text.citizen_id.startswith("19999")
    card = CardRead(atr=ATR_3B79, text=demo_profile(0).text)
    shown = card_fields(card, image=False, now=dt.datetime(2025, 11, 7, 17, 26, 31).astimezone())
    documented = {"pid": "1999900000005", "titleName": "003", "titleNameText": "นาย",
                  "fname": "ทดสอบ", "lname": "ระบบอ่านบัตร", "nation": "099",
                  "birthDate": "25300115", "sex": "ชาย", "age": "38 ปี 9 เดือน 23 วัน"}
    assert {k: shown[k] for k in documented} == documented
    assert demo_profile(0).text.name_en.full(thai=False) == "Mr. Demo Cardreader"


DEMO_ADDRESS = ("99/9", "หมู่ที่ 9", "", "ซอยสาธิต", "ถนนทดสอบ", "ตำบลตัวอย่าง", "อำเภอสาธิต",
                "จังหวัดนนทบุรี")


@pytest.mark.parametrize("variant, cid, th, en, gender, birth, expiry, request_no, under", [
    (0, "1999900000005", Name("นาย", "ทดสอบ", "", "ระบบอ่านบัตร"),
     Name("Mr.", "Demo", "", "Cardreader"), "1", "25300115", "25750114",
     "12345678901/00000001", "12345678901234"),
    (1, "1999900000102", Name("นางสาว", "ตัวอย่าง", "", "ใจดี"), Name("Miss", "Sample", "", "Jaidee"),
     "2", "25420000", "99999999", "12345678902/00000002", "12345678901235"),
    (2, "1999900000200", Name("นาย", "ทดสอบ", "", "ระบบอ่านบัตร"),
     Name("Mr.", "Demo", "", "Cardreader"), "1", "25300115", "25750114",
     "12345678903/00000003", "12345678901236"),
    (99, "1999900009991", Name("นางสาว", "ตัวอย่าง", "", "ใจดี"),
     Name("Miss", "Sample", "", "Jaidee"), "2", "25420000", "99999999",
     "12345679000/00000100", "12345678901333"),
])
def test_the_demo_people(variant: int, cid: str, th: Name, en: Name, gender: str, birth: str,
                         expiry: str, request_no: str, under: str) -> None:
    """What the demo reader serves, field by field: demo pages and screenshots show it
    (variant 0 is the answer in docs/integration.md); an odd variant has a year-only birth
    date and a lifelong card, the cases pages must handle."""
    profile = demo_profile(variant)
    assert profile.text == CardText(
        citizen_id=cid, name_th=th, name_en=en, birth_date=CardDate(birth),
        gender=Gender(gender), issuer="ท้องถิ่นอำเภอทดสอบ/จังหวัดตัวอย่าง (ข้อมูลสาธิต)",
        issue_date=CardDate("25660401"), expiry_date=CardDate(expiry),
        address=Address(DEMO_ADDRESS), number_under_photo=under, issuer_code="1234567890123",
        version="0003", request_number=request_no, card_type="01",
        photo_length=len(profile.photo))
    assert profile.text.citizen_id_valid


def test_demo_photo_is_a_labelled_placeholder_per_variant() -> None:
    """Each demo card carries the DEMO placeholder portrait at its own shade: a 148x178
    JPEG (the size real cards hold) that fits the 5118-byte field."""
    import io

    from PIL import Image

    from agent.card.demo import demo_photo

    photos = [demo_profile(v).photo for v in range(4)]
    assert photos[0] == demo_photo("DEMO", 0) and photos[1] == demo_photo("DEMO", 17)
    assert photos[3] == demo_photo("DEMO", 51) and len(set(photos)) == 4
    assert demo_photo("DEMO", 0) != demo_photo("BENCH", 0)
    for shade, photo in ((0, photos[0]), (51, photos[3])):
        assert photo.startswith(b"\xff\xd8") and photo.endswith(b"\xff\xd9")
        assert len(photo) <= 5000
        image = Image.open(io.BytesIO(photo)).convert("RGB")
        assert image.size == (148, 178)
        background = image.getpixel((4, 4))
        assert isinstance(background, tuple)
        for got, want in zip(background, (200 - shade, 215, 235), strict=True):
            assert abs(got - want) <= 8, (shade, background)
        head = image.getpixel((74, 60))
        band = image.getpixel((6, 160))
        assert isinstance(head, tuple) and isinstance(band, tuple)
        assert all(abs(g - w) <= 8 for g, w in zip(head, (120, 130, 150), strict=True)), head
        assert band[0] > 150 and band[1] < 80 and band[2] < 80, band      # the red DEMO band


class RefusesPhotoFrom(SimulatedCard):
    """Refuses (69 82) every read of the photo field from ``refuse_at`` on."""

    refuse_at = L.PHOTO.offset

    def process(self, apdu: bytes) -> bytes:
        offset = (apdu[2] << 8 | apdu[3]) if len(apdu) >= 4 else 0
        if apdu[:2] == b"\x80\xb0" and self.refuse_at <= offset < L.PHOTO.end:
            return b"\x69\x82"
        return super().process(apdu)


@pytest.mark.parametrize("case", ["span", "field", "stated", "rest"])
def test_a_refused_photo_read_names_its_step(case: str) -> None:
    demo = demo_profile(0)
    stated = {"span": 0, "field": 0, "stated": len(demo.photo),
              "rest": len(demo.photo) - 1}[case]
    card = RefusesPhotoFrom(encode_card(CardProfile(replace(demo.text, photo_length=stated),
                                                    demo.photo)))
    if case == "rest":        # the stated bytes come; the rest of the field is refused
        card.refuse_at = L.PHOTO.offset + stated
    with pytest.raises(ApduFailed) as err:       # "span": photo and address in one span
        read_card(card.process, card.atr, on_text=None if case == "span" else lambda r: None)
    assert (err.value.sw, err.value.step) == (0x6982, "read_photo")


class RefusesFrom(SimulatedCard):
    """Refuses (69 82) every read at ``refuse_at`` or after it."""

    refuse_at = 0

    def process(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x80\xb0" and (apdu[2] << 8 | apdu[3]) >= self.refuse_at:
            return b"\x69\x82"
        return super().process(apdu)


@pytest.mark.parametrize("refuse_at, step", [(0x00FF, "read_text"),
                                              (L.TAIL_BLOCK.offset, "read_address")])
def test_a_refused_text_or_address_read_names_its_step(refuse_at: int, step: str) -> None:
    card = RefusesFrom(encode_card(demo_profile(0)))
    card.refuse_at = refuse_at
    with pytest.raises(ApduFailed) as err:
        read_card(card.process, card.atr, on_text=lambda r: None)
    assert (err.value.sw, err.value.step) == (0x6982, step)


def test_several_61xx_turns_keep_every_part() -> None:
    _, data = drive(Conversation(ATR_3B79).fetch_script(3, "t"),
                    [b"abc\x61\x03", b"def\x61\x03", b"ghi" + OK])
    assert data == b"abcdefghi"


def test_simulator_select_with_a_trailing_le() -> None:
    assert simulated().process(MOI_SELECT + b"\x00") == b"\x61\x0a"


def test_simulator_answers_that_depend_on_lengths() -> None:
    card = simulated()
    card.process(MOI_SELECT)
    assert card.process(bytes.fromhex("80B00004020001")) == b"\x61\x01"
    assert card.process(bytes.fromhex("00C00000")) == b"\x6c\x01"          # no Le is Le 0
    assert card.process(bytes.fromhex("80B0000402000C")) == b"\x61\x0c"
    assert card.process(bytes.fromhex("00C0000001")) == b"\x6c\x0c"        # even: 6C 0C
    assert card.process(bytes.fromhex("00A4040000")) == b"\x6a\x82"        # no AID at all
    laser = SimulatedCard(card.moi_image, laser_answer=b"JT1234567890\0\0\0\0")
    assert laser.process(LASER_SELECT) == b"\x61\x0a"
    assert laser.process(bytes.fromhex("80000000")) == b"\x61\x10"         # 16 bytes
    assert laser.process(bytes.fromhex("80B0000002000D")) == b"\x69\x86"   # no file to read


def test_error_texts_say_what_was_wrong() -> None:
    from agent.card.decode import decode_field, decode_text_fields

    with pytest.raises(ValueError, match=r"^bad read 0x10000\+1$"):
        read_command(0x10000, 1)
    with pytest.raises(CardDataInvalid, match=r"^text block is 10 bytes, expected 379$"):
        decode_text_fields(bytes(10), bytes(L.TAIL_BLOCK.length))
    with pytest.raises(CardDataInvalid, match=r"^address block is 3 bytes, expected 174$"):
        decode_text_fields(bytes(L.TEXT_BLOCK.length), bytes(3))
    with pytest.raises(CardDataInvalid, match=r"^read_text: 10 of 13 bytes$"):
        drive(Conversation(ATR_3B79).read_script(4, 13, "read_text"),
              [b"\x61\x0d", b"\x6c\x0a", b"0123456789" + OK])
    with pytest.raises(ApduFailed) as err:            # GET RESPONSE refused: the read's step
        drive(Conversation(ATR_3B79).read_script(4, 13, "read_text"),
              [b"\x61\x0d", b"\x6f\x00"])
    assert (err.value.sw, err.value.step) == (0x6F00, "read_text")
    jpeg = b"\xff\xd8" + bytes(20) + b"\xff\xd9"
    assert decode_field(L.PHOTO, jpeg.ljust(L.PHOTO.length, b" ")) == jpeg


def test_only_spaces_and_nuls_are_address_padding() -> None:
    from agent.card.decode import decode_address

    a = decode_address(b"1#2#3#4#5#6#7#8\xa0")    # 0xA0 is a character in cp874 (NBSP)
    assert a.parts[-1] == "8\xa0"


def test_a_photo_that_fills_the_field_exactly() -> None:
    photo = b"\xff\xd8" + bytes(L.PHOTO.length - 4) + b"\xff\xd9"
    assert encode_field(L.PHOTO, photo) == photo
