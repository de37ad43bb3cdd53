"""Property tests: encode/decode round trip, decoders and the APDU machine on any input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.card import layout as L
from agent.card.apdu import Conversation
from agent.card.decode import (
    decode_address,
    decode_laser_id,
    decode_name,
    decode_nhso,
    decode_photo,
    decode_text_fields,
)
from agent.card.encode import encode_card
from agent.card.session import read_card
from agent.card.simulator import ATR_3B67, ATR_3B79, SimulatedCard
from agent.errors import AgentError, CardDataInvalid
from tests.card_strategies import card_profile

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _decode_image(image: bytes):
    text = decode_text_fields(L.TEXT_BLOCK.cut(image), L.TAIL_BLOCK.cut(image))
    return text, decode_photo(L.PHOTO.cut(image))


@SETTINGS
@given(card_profile())
def test_decode_of_encode_is_identity(profile):
    image = encode_card(profile)
    assert len(image) == L.FILE_SIZE
    text, photo = _decode_image(image)
    assert text == profile.text
    assert photo == profile.photo


@SETTINGS
@given(card_profile(), st.sampled_from([ATR_3B67, ATR_3B79]), st.booleans())
def test_read_over_the_simulator_is_identity(profile, atr, text_first):
    card = SimulatedCard(encode_card(profile), atr=atr)
    result = read_card(card.process, atr, on_text=(lambda r: None) if text_first else None)
    assert result.text == profile.text and result.photo == profile.photo


def wrong_size(right: int) -> st.SearchStrategy[bytes]:
    """Bytes of any length but ``right``, the lengths next to it drawn often."""
    size = st.one_of(st.sampled_from([0, right - 1, right + 1, right * 2]),
                     st.integers(0, right + 300)).filter(lambda n: n != right)
    return size.flatmap(lambda n: st.binary(min_size=n, max_size=n))


def exact_size(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@SETTINGS
@given(st.one_of(st.tuples(wrong_size(L.TEXT_BLOCK.length), exact_size(L.TAIL_BLOCK.length)),
                 st.tuples(exact_size(L.TEXT_BLOCK.length), wrong_size(L.TAIL_BLOCK.length)),
                 st.tuples(wrong_size(L.TEXT_BLOCK.length), wrong_size(L.TAIL_BLOCK.length))))
def test_text_decoder_refuses_blocks_of_the_wrong_size(blocks):
    # A short read must never become a card with fields cut or shifted.
    with pytest.raises(CardDataInvalid):
        decode_text_fields(*blocks)


@SETTINGS
@given(st.binary(min_size=L.TEXT_BLOCK.length, max_size=L.TEXT_BLOCK.length),
       st.binary(min_size=L.TAIL_BLOCK.length, max_size=L.TAIL_BLOCK.length))
def test_text_decoder_accepts_any_bytes_of_the_right_size(block, tail):
    text = decode_text_fields(block, tail)
    text.to_json()          # every parsed view works on garbage too
    assert len(text.address.parts) == 8


PHOTO_FIELD = 5118          # bytes at 0x017B, JPEG then 0x20 fill (field notes, section 1)


@st.composite
def photo_field(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A photo field and the JPEG in it: the body may end in 0x20 bytes, which are data."""
    body = draw(st.binary(max_size=PHOTO_FIELD - 200).filter(lambda b: b"\xff\xd9" not in b
                                                                and not b.endswith(b"\xff")))
    body += b" " * draw(st.integers(0, 40))
    jpeg = b"\xff\xd8" + body + b"\xff\xd9"
    return jpeg + b" " * (PHOTO_FIELD - len(jpeg)), jpeg


@SETTINGS
@given(photo_field())
def test_photo_is_the_jpeg_up_to_its_end_marker_spaces_inside_kept(field_and_jpeg):
    field, jpeg = field_and_jpeg
    assert decode_photo(field) == jpeg


@SETTINGS
@given(st.one_of(wrong_size(PHOTO_FIELD),
                 photo_field().map(lambda f: f[0][:-1]),           # a whole JPEG, field short
                 photo_field().map(lambda f: f[0] + b" "),          # or long
                 photo_field().map(lambda f: b"\x00\x00" + f[0][2:]),          # no JPEG start
                 photo_field().map(lambda f: f[0].replace(b"\xff\xd9", b"  "))))  # no JPEG end
def test_photo_that_is_not_a_whole_jpeg_field_is_refused(data):
    with pytest.raises(CardDataInvalid):
        decode_photo(data)


@SETTINGS
@given(exact_size(L.NHSO_BLOCK.length), wrong_size(L.NHSO_BLOCK.length),
       exact_size(23), st.binary(max_size=22).filter(lambda b: len(b) != 16))
def test_nhso_and_laser_decoders_take_any_bytes_of_their_size_only(nhso, short_nhso, laser,
                                                                    short_laser):
    coverage = decode_nhso(nhso)                 # garbage of the right size still decodes
    assert isinstance(coverage.main_inscl, str) and isinstance(coverage.change_count, str)
    with pytest.raises(CardDataInvalid):
        decode_nhso(short_nhso)
    expected = laser[7:23].decode("ascii", errors="replace").strip(" \x00")
    if expected:
        assert decode_laser_id(laser) == expected
    else:                                        # padding alone: no laser id on this card
        with pytest.raises(CardDataInvalid):
            decode_laser_id(laser)
    with pytest.raises(CardDataInvalid):        # 16 bytes is the other form's answer
        decode_laser_id(short_laser)


@SETTINGS
@given(st.binary(max_size=200))
def test_name_and_address_decoders_take_any_bytes(data):
    name = decode_name(data[:100])
    for part in (name.prefix, name.first, name.middle, name.last):
        assert "#" not in part and part == part.strip(" \x00")     # split, padding gone
    address = decode_address(data[:160])
    assert len(address.parts) == 8
    address.to_json()


# The APDU state machine against a card that answers anything at all.
status_word = st.one_of(
    st.sampled_from([0x9000, 0x6100, 0x61FF, 0x6C00, 0x6C05, 0x6B00, 0x6A82, 0x6A86,
                     0x6982, 0x6D00, 0x6E00, 0x6700, 0x6283]),
    st.integers(0, 0xFFFF))
response = st.tuples(st.binary(max_size=300), status_word).map(
    lambda t: t[0] + t[1].to_bytes(2, "big"))


@SETTINGS
@given(st.lists(st.one_of(response, st.binary(max_size=3)), min_size=1, max_size=120),
       st.sampled_from([ATR_3B67, ATR_3B79, b""]))
def test_apdu_machine_on_random_answers_ends_with_a_card_or_a_typed_error(answers, atr):
    queue = list(answers)

    def transmit(apdu: bytes) -> bytes:
        assert len(apdu) >= 4
        if not queue:
            raise _Exhausted()
        return queue.pop(0)

    try:
        read_card(transmit, atr, on_text=lambda r: None, nhso=True, laser=True)
    except (AgentError, _Exhausted):
        pass


class _Exhausted(Exception):
    """The fake card ran out of answers: the machine kept asking, which is fine."""


@SETTINGS
@given(st.lists(st.integers(0x6100, 0x61FF), min_size=50, max_size=60))
def test_a_card_that_always_says_more_cannot_loop_us(sws):
    conv = Conversation(ATR_3B79)
    answers = iter(sws)
    script = conv.read_script(0, 255, "t")
    command = next(script)
    try:
        for _ in range(40):
            command = script.send(next(answers).to_bytes(2, "big"))
        raise AssertionError("no end after 40 turns")
    except AgentError:
        pass
    assert command
