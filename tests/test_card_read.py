"""The APDU conversation and the whole-card read, against the simulated card."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from agent.card import layout as L
from agent.card.apdu import Conversation, get_response_p2
from agent.card.decode import decode_photo
from agent.card.demo import demo_profile
from agent.card.encode import encode_card, encode_nhso
from agent.card.session import read_card, run_script
from agent.card.simulator import ATR_3B67, ATR_3B68, ATR_3B79, ATR_NOT_THAI, SimulatedCard
from agent.card.values import CardDate, CardProfile, NhsoCoverage
from agent.errors import AgentError, ApduFailed, CardDataInvalid, CardRemoved, NotThaiIdCard


class Recorder:
    """transmit() that records every command and can pull the card after N APDUs."""

    def __init__(self, card: SimulatedCard, pull_after: int | None = None) -> None:
        self.card = card
        self.sent: list[bytes] = []
        self.pull_after = pull_after

    def __call__(self, apdu: bytes) -> bytes:
        if self.pull_after is not None and len(self.sent) >= self.pull_after:
            raise CardRemoved()
        self.sent.append(apdu)
        return self.card.process(apdu)


def get_responses(sent: list[bytes]) -> list[bytes]:
    return [c for c in sent if c[:2] == b"\x00\xc0"]


@pytest.fixture
def profile() -> CardProfile:
    """A card that does not state its photo's length (00 00 at 0x0179): read as always."""
    demo = demo_profile(0)
    return CardProfile(replace(demo.text, photo_length=0), demo.photo)


@pytest.fixture
def stated() -> CardProfile:
    """A card that states its photo's length at 0x0179, as real cards do."""
    return demo_profile(0)


def test_full_read_matches_profile_with_fewest_apdus(profile):
    card = SimulatedCard(encode_card(profile))
    rec = Recorder(card)
    result = read_card(rec, card.atr)
    assert result.text == profile.text and result.photo == profile.photo
    # SELECT + 2 text reads + 21 reads of photo and address as one span, each read = 2 APDUs
    assert result.stats.apdus == len(rec.sent) == 1 + 2 * 2 + 21 * 2 == 47
    reads = [c for c in rec.sent if c[:2] == b"\x80\xb0"]
    assert sum(1 for c in reads if c[6] == 0xFF) == len(reads) - 2   # only the tails are short


def test_text_first_read_hands_over_text_before_photo(profile):
    card = SimulatedCard(encode_card(profile))
    rec = Recorder(card)
    seen = []
    result = read_card(rec, card.atr, on_text=lambda r: seen.append((r.photo, len(rec.sent))))
    assert seen == [(None, 7)]                          # select + 2 text reads + address read
    assert result.stats.text_apdus == 7 and result.stats.apdus == 7 + 21 * 2
    assert result.photo == profile.photo


@pytest.mark.parametrize("atr, p2", [(ATR_3B67, 0x01), (ATR_3B68, 0x00), (ATR_3B79, 0x00)])
def test_get_response_p2_follows_the_atr(profile, atr, p2):
    card = SimulatedCard(encode_card(profile), atr=atr, strict_p2=True)
    rec = Recorder(card)
    assert read_card(rec, atr).text == profile.text
    assert get_response_p2(atr) == p2
    assert {c[3] for c in get_responses(rec.sent)} == {p2}


def test_unknown_atr_falls_back_to_the_other_p2_once(profile):
    # A strict 3B 67 card behind a reader that reports a different ATR: one retry, then sticky.
    card = SimulatedCard(encode_card(profile), atr=ATR_3B67, strict_p2=True)
    rec = Recorder(card)
    result = read_card(rec, ATR_3B79)
    assert result.text == profile.text
    assert [c[3] for c in get_responses(rec.sent)].count(0x00) == 1
    assert result.stats.apdus == 48


def test_wrong_length_6c_is_resent_with_the_length_the_card_gives():
    conv = Conversation(ATR_3B79)
    script = conv.read_script(0x0004, 13, "t")
    assert next(script) == bytes.fromhex("80B0000402000D")        # READ 13 bytes at 0x0004
    assert script.send(b"\x61\x0d") == bytes.fromhex("00C000000D")  # GET RESPONSE, Le 13
    retry = script.send(b"\x6c\x0a")                   # card: only 10 bytes are ready
    assert retry == b"\x00\xc0\x00\x00\x0a"
    with pytest.raises(CardDataInvalid):
        script.send(b"0123456789\x90\x00")             # 10 of 13 bytes is not a value


def test_61xx_after_get_response_is_followed():
    conv = Conversation(ATR_3B79)
    script = conv.read_script(0x0000, 6, "t")
    next(script)
    script.send(b"\x61\x06")
    more = script.send(b"abc\x61\x03")
    assert more == b"\x00\xc0\x00\x00\x03"
    with pytest.raises(StopIteration) as done:
        script.send(b"def\x90\x00")
    assert done.value.value == b"abcdef"


def test_reader_that_returns_data_at_once_costs_one_apdu():
    conv = Conversation(ATR_3B79)
    script = conv.read_script(0x0000, 3, "t")
    next(script)
    with pytest.raises(StopIteration) as done:
        script.send(b"xyz\x90\x00")
    assert done.value.value == b"xyz"


def test_not_a_thai_id_card(profile):
    card = SimulatedCard(encode_card(profile), atr=ATR_NOT_THAI, is_thai_id=False)
    with pytest.raises(NotThaiIdCard) as err:
        read_card(Recorder(card), card.atr)
    assert err.value.code == "not_thai_id"


def test_error_status_word_is_typed():
    conv = Conversation(ATR_3B79)
    script = conv.read_script(0x0000, 3, "read_text")
    next(script)
    with pytest.raises(ApduFailed) as err:
        script.send(b"\x69\x82")
    assert (err.value.code, err.value.sw, err.value.step) == ("apdu_failed", 0x6982, "read_text")


@pytest.mark.parametrize("pull_after", [0, 1, 3, 6, 7, 8, 20, 46])
def test_card_pulled_mid_read_fails_whole(profile, pull_after):
    card = SimulatedCard(encode_card(profile))
    with pytest.raises(CardRemoved):
        read_card(Recorder(card, pull_after=pull_after), card.atr)


def _jpeg_of_size(size: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (148, 178), (90, 120, 150)).save(out, "JPEG", quality=50)
    base = out.getvalue()
    # pad with a COM segment right after SOI so the JPEG stays valid at the exact size
    pad = size - len(base) - 4
    assert 0 <= pad < 0xFFFF
    return base[:2] + b"\xff\xfe" + (pad + 2).to_bytes(2, "big") + b"\x20" * pad + base[2:]


def test_photo_whose_end_marker_lies_in_the_last_18_bytes(profile):
    photo = _jpeg_of_size(5110)                    # 20 reads of 255 bytes would cut it
    assert photo.rfind(b"\xff\xd9") >= 20 * 255
    p = CardProfile(text=profile.text, photo=photo)
    card = SimulatedCard(encode_card(p))
    result = read_card(Recorder(card), card.atr, on_text=lambda r: None)
    assert result.photo == photo and result.photo_error is None
    from PIL import Image
    assert Image.open(io.BytesIO(result.photo)).size == (148, 178)


def test_photo_is_binary_whitespace_and_all(profile):
    photo = b"\xff\xd8" + b"\x20\x00\x0a\x0d\x09" * 100 + b"\xff\xd9"
    card = SimulatedCard(encode_card(CardProfile(profile.text, photo)))
    assert read_card(Recorder(card), card.atr).photo == photo


def test_bad_photo_is_reported_without_voiding_the_text(profile):
    card = SimulatedCard(encode_card(CardProfile(profile.text, b"not a jpeg")))
    result = read_card(Recorder(card), card.atr)
    assert result.text == profile.text and result.photo is None
    assert result.photo_error.code == "card_data_invalid"
    assert result.to_json()["photo_error"]["code"] == "card_data_invalid"


def test_decode_photo_cuts_at_the_last_end_marker():
    inner = b"\xff\xd8thumb\xff\xd9"
    field = (b"\xff\xd8" + inner + b"main\xff\xd9").ljust(L.PHOTO.length, b"\x00")
    assert decode_photo(field).endswith(b"main\xff\xd9")
    with pytest.raises(CardDataInvalid):
        decode_photo(b"\xff\xd8".ljust(L.PHOTO.length, b"\x00"))


def test_lifelong_card_and_unknown_birth_day_month(profile):
    from dataclasses import replace

    t = replace(profile.text, birth_date=CardDate("25100000"), expiry_date=CardDate("99999999"))
    card = SimulatedCard(encode_card(CardProfile(t, profile.photo)), atr=ATR_3B67)
    j = read_card(Recorder(card), card.atr).to_json()
    assert j["birth_date"]["iso"] == "1967" and j["birth_date"]["precision"] == "year"
    assert j["expiry_date"]["lifelong"] is True and j["expiry_date"]["iso"] is None
    assert j["card"]["atr"].startswith("3B 67")


def _photo_reads(sent: list[bytes]) -> int:
    return sum(1 for c in sent if c[:2] == b"\x80\xb0" and (c[2] << 8 | c[3]) >= L.PHOTO.offset
               and (c[2] << 8 | c[3]) < L.PHOTO.end)


@pytest.mark.parametrize("text_first", [False, True])
def test_stated_photo_length_reads_only_that_many_bytes(stated, text_first):
    card = SimulatedCard(encode_card(stated))
    rec = Recorder(card)
    result = read_card(rec, card.atr, on_text=(lambda r: None) if text_first else None)
    assert result.photo == stated.photo and result.text == stated.text
    chunks = -(-len(stated.photo) // 255)
    assert _photo_reads(rec.sent) == chunks
    # SELECT, 2 text reads, the address read, the photo's reads; 2 APDUs a read.
    assert result.stats.apdus == len(rec.sent) == 1 + 2 * (2 + 1 + chunks)
    assert result.stats.text_apdus == 7


def test_a_3_9_kb_photo_takes_at_most_40_apdus(stated):
    photo = _jpeg_of_size(3900)
    p = CardProfile(replace(stated.text, photo_length=len(photo)), photo)
    card = SimulatedCard(encode_card(p))
    result = read_card(card.process, card.atr)
    assert result.photo == photo and result.stats.apdus <= 40


@pytest.mark.parametrize("length", [0, 1, 3, 5119, 0x2020, 0xFFFF])
def test_an_unusable_length_reads_exactly_as_without_one(profile, length):
    plain = Recorder(SimulatedCard(encode_card(profile)))
    read_card(plain, plain.card.atr)
    odd = CardProfile(replace(profile.text, photo_length=length), profile.photo)
    rec = Recorder(SimulatedCard(encode_card(odd)))
    result = read_card(rec, rec.card.atr)
    assert result.photo == profile.photo and rec.sent == plain.sent


@pytest.mark.parametrize("wrong", [-1, +1, -100, +300])
def test_a_stated_length_that_misses_the_end_marker_falls_back(stated, wrong):
    length = len(stated.photo) + wrong
    p = CardProfile(replace(stated.text, photo_length=length), stated.photo)
    card = SimulatedCard(encode_card(p))
    result = read_card(card.process, card.atr)
    assert result.photo == stated.photo and result.photo_error is None


def test_late_end_marker_photo_read_whole_with_its_length(stated):
    photo = _jpeg_of_size(5112)
    p = CardProfile(replace(stated.text, photo_length=len(photo)), photo)
    card = SimulatedCard(encode_card(p))
    assert read_card(card.process, card.atr).photo == photo


class LaserCard(SimulatedCard):
    """A card whose laser applet answers only one of the three command forms."""

    form: bytes = b""

    def process(self, apdu: bytes) -> bytes:
        if apdu[:4] == b"\x80\x00\x00\x00" and self._selected == L.LASER_AID:
            if apdu != self.form:
                return b"\x6d\x00"
            if apdu == bytes.fromhex("80000000FF"):
                return (self.laser_answer or b"") + b"\x90\x00"   # data at once
        return super().process(apdu)


@pytest.mark.parametrize("form", [f for f, _ in L.LASER_FORMS])
def test_laser_id_tries_the_three_forms_in_order(profile, form):
    card = LaserCard(encode_card(profile), laser_answer=bytes(7) + b"ME0123456789\0\0\0\0")
    card.form = form
    rec = Recorder(card)
    result = read_card(rec, card.atr, photo=False, laser=True)
    assert result.laser_id == "ME0123456789" and result.laser_command == form
    tried = [c for c in rec.sent if c[:4] == b"\x80\x00\x00\x00"]
    order = [f for f, _ in L.LASER_FORMS]
    assert tried == order[:order.index(form) + 1]
    assert result.to_json()["laser_id_command"] == form.hex(" ").upper()


def test_laser_id_unavailable_is_not_an_error_for_the_read(profile):
    bare = SimulatedCard(encode_card(profile))
    result = read_card(bare.process, bare.atr, photo=False, laser=True)
    assert result.laser_id is None and result.laser_error is not None
    assert result.to_json()["laser_error"]["code"] == "laser_unavailable"
    assert result.to_json()["citizen_id"] == profile.text.citizen_id


def test_optional_nhso_applet_and_laser_id(profile):
    cov = NhsoCoverage("UCS", "89", "10699", "10699", "1", CardDate("25660101"),
                       CardDate("25700101"), CardDate("25660101"), "0")
    laser = bytes(7) + b"JT1234567890ABCD"
    card = SimulatedCard(encode_card(profile), nhso_image=encode_nhso(cov), laser_answer=laser)
    result = read_card(Recorder(card), card.atr, nhso=True, laser=True)
    assert result.nhso == cov and result.laser_id == "JT1234567890ABCD"
    bare = SimulatedCard(encode_card(profile))          # most cards: neither applet
    result = read_card(Recorder(bare), bare.atr, nhso=True, laser=True)
    assert result.nhso is None and result.laser_id is None and result.text == profile.text
    assert result.to_json()["nhso_applet"] is None        # asked for, absent


def test_run_script_counts_apdus():
    conv = Conversation(ATR_3B79)
    card = SimulatedCard(encode_card(demo_profile(1)))
    run_script(conv.select_script(L.MOI_AID), card.process, conv)
    data = run_script(conv.read_span_script(0, 600, "t"), card.process, conv)
    assert len(data) == 600 and conv.apdus == 1 + 3 * 2


def test_errors_are_agent_errors():
    for exc in (CardRemoved(), NotThaiIdCard(), ApduFailed(0x6A82, "x"), CardDataInvalid("x")):
        assert isinstance(exc, AgentError) and exc.to_dict()["message_th"]
