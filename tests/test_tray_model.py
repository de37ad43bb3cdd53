"""The tray's pure parts: state from events, icons (told apart without colour), texts."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image, ImageChops

from tray import i18n
from tray.icons import SIZE, render
from tray.state import CardSummary, Claims, Status, TrayState

READER = "ACS ACR39U 00 00"
CARD = {"citizen_id": "1999900000005",
        "name_th": {"full": "นายทดสอบ ระบบอ่านบัตร"},
        "name_en": {"full": "Mr. Demo Cardreader"},
        "address": {"full": "99/9 หมู่ที่ 9"}, "birth_date": {"iso": "1987-01-15"}}


def snapshot(*readers: dict, pcsc: str = "available") -> dict:
    return {"type": "snapshot", "pcsc": pcsc, "readers": list(readers)}


def reader(name: str = READER, present: bool = False, status: str = "empty") -> dict:
    return {"name": name, "present": present, "status": status, "error": None}


def ev(kind: str, rdr: str | None = READER, **payload: object) -> dict:
    return {"v": 1, "type": kind, "seq": 1, "time": "2025-01-01T00:00:00+07:00",
            "reader": rdr, **payload}


def state_for(status: Status) -> TrayState:
    """A state in each of the icon's states, reached through events only."""
    st = TrayState()
    if status is Status.STARTING:
        return st
    st.apply(snapshot(reader()))
    if status is Status.OFFLINE:
        st.disconnected()
    elif status is Status.PCSC_UNAVAILABLE:
        st.apply(ev("pcsc.unavailable", None, code="pcsc_unavailable"))
    elif status is Status.NO_READER:
        st.apply(ev("reader.removed", readers=[]))
    elif status is Status.READING:
        st.apply(ev("card.inserted", atr="3B 79"))
    elif status is Status.CARD_PRESENT:
        st.apply(ev("card.inserted", atr="3B 79"))
        st.apply(ev("card.read", card=CARD))
    elif status is Status.ERROR:
        st.apply(ev("card.inserted", atr="3B 79"))
        st.apply(ev("card.error", code="not_thai_id", message="x", message_th="x"))
    return st


@pytest.mark.parametrize("status", list(Status))
def test_every_state_is_reached_from_events(status: Status) -> None:
    assert state_for(status).status is status


def test_card_lifecycle_keeps_only_masked_id_and_name_while_the_card_is_in() -> None:
    st = state_for(Status.CARD_PRESENT)
    notices = st.apply(ev("card.read", card=CARD))
    assert [n.key for n in notices] == ["notify.card_read"]
    assert st.last_card == CardSummary(READER, "1-9999-xxxxx-xx-5", "นายทดสอบ ระบบอ่านบัตร",
                                       "Mr. Demo Cardreader")
    assert "1999900000005" not in repr(st)        # the full id is never kept
    assert "99/9" not in repr(st)                 # nor the address
    st.apply(ev("card.removed"))
    assert st.last_card is None
    assert st.status is Status.IDLE


def test_last_card_switches_to_the_other_reader_when_one_card_leaves() -> None:
    st = TrayState()
    st.apply(snapshot(reader("A"), reader("B")))
    for name, cid in (("A", "1999900000005"), ("B", "3100600012343")):
        st.apply(ev("card.inserted", name))
        st.apply(ev("card.read", name, card={**CARD, "citizen_id": cid}))
    assert st.last_card is not None and st.last_card.reader == "B"
    st.apply(ev("card.removed", "B"))
    assert st.last_card is not None and st.last_card.reader == "A"


def test_pcsc_stop_notifies_once_and_forgets_readers() -> None:
    st = state_for(Status.CARD_PRESENT)
    first = st.apply(ev("pcsc.unavailable", None))
    again = st.apply(ev("pcsc.unavailable", None))
    assert [n.key for n in first] == ["notify.pcsc_stopped"] and again == []
    assert st.readers == {} and st.last_card is None
    st.apply(ev("pcsc.available", None))
    assert st.status is Status.NO_READER


def test_snapshot_after_reconnect_replaces_what_was_known() -> None:
    st = state_for(Status.CARD_PRESENT)
    st.disconnected()
    assert st.status is Status.OFFLINE and st.last_card is None
    st.apply(snapshot(reader(present=True, status="ready")))
    assert st.status is Status.CARD_PRESENT
    st.apply(snapshot(reader(present=True, status="error") | {"error": {"code": "apdu_failed"}}))
    assert st.status is Status.ERROR and st.error_codes == ["apdu_failed"]


def test_claims_counts_from_events_and_failure_notice() -> None:
    st = state_for(Status.IDLE)
    assert st.claims is Claims.NONE
    st.apply(ev("claim.queued", None))
    st.apply(ev("claim.queued", None))
    assert (st.claims, st.claims_pending) == (Claims.PENDING, 2)
    st.apply(ev("claim.sent", None))
    notices = st.apply(ev("claim.failed", None, status="failed",
                          error={"code": "nhso_rejected", "message": "x"}))
    assert (st.claims, st.claims_pending, st.claims_failed) == (Claims.FAILED, 0, 1)
    assert notices[0].key == "notify.claim_failed"
    assert notices[0].kwargs() == {"code": "nhso_rejected"}
    # Counts sent by the agent win over the running tally.
    st.apply(ev("claim.sent", None, counts={"pending": 5, "failed": 0}))
    assert (st.claims_pending, st.claims_failed) == (5, 0)


def test_visits_needing_staff_are_notified_by_their_label() -> None:
    st = state_for(Status.IDLE)
    due = st.apply(ev("visit.due", None, id="v1", transactionId="10699-VN1",
                      status="waiting", label="ห้องตรวจ 3, 09:40", serviceDate="2026-12-01",
                      claimId=None))
    assert [(n.key, n.kwargs()) for n in due] == [
        ("notify.visit_due", {"label": "ห้องตรวจ 3, 09:40"})]
    expired = st.apply(ev("visit.expired", None, id="v2", transactionId="10699-VN2",
                          status="expired", label="", serviceDate="2026-11-30",
                          claimId=None))
    assert [(n.key, n.kwargs()) for n in expired] == [
        ("notify.visit_expired", {"label": "10699-VN2"})]
    for notice in due + expired:
        for lang in ("th", "en"):
            assert notice.kwargs()["label"] in i18n.text(notice.key, lang, **notice.kwargs())
    assert st.apply(ev("visit.confirmed", None, id="v1")) == []      # nothing to do


def test_unknown_and_malformed_events_are_ignored() -> None:
    st = state_for(Status.IDLE)
    assert st.apply({"type": "something.new", "x": 1}) == []
    assert st.apply({"type": "snapshot", "readers": [1, {"no": "name"}]}) == []
    assert st.status is Status.NO_READER
    st.apply(ev("card.read", card="not a dict"))
    assert st.readers[READER].card is None


# -- icons ------------------------------------------------------------------------------
ALL_ICONS = [(s, c) for s in Status for c in Claims]


def silhouette(img: Image.Image) -> Image.Image:
    """What a monochrome tray shows: opaque or not, no colour at all."""
    return img.getchannel("A").point(lambda a: 255 if a > 127 else 0)


def luminance(img: Image.Image) -> Image.Image:
    """Grey levels of the icon over a white background."""
    bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, img).convert("L")


def differing(a: Image.Image, b: Image.Image) -> int:
    return ImageChops.difference(a, b).point(lambda p: 255 if p > 64 else 0).histogram()[255]


def test_icons_are_rgba_of_the_tray_size() -> None:
    for status, claims in ALL_ICONS:
        img = render(status, claims)
        assert img.mode == "RGBA" and img.size == (SIZE, SIZE)
        assert silhouette(img).getbbox() is not None, status


def test_every_two_states_differ_in_shape_and_in_grey() -> None:
    # At least 2% of the pixels must change in the silhouette alone, and in grey levels.
    minimum = SIZE * SIZE // 50
    for a, b in itertools.combinations(ALL_ICONS, 2):
        assert differing(silhouette(render(*a)), silhouette(render(*b))) >= minimum, (a, b)
        assert differing(luminance(render(*a)), luminance(render(*b))) >= minimum, (a, b)


def test_icon_shapes_where_expected() -> None:
    centre_of_card = (SIZE * 50 // 100, SIZE * 45 // 100)
    def opaque(status: Status, xy: tuple[int, int], claims: Claims = Claims.NONE) -> bool:
        return render(status, claims).getpixel(xy)[3] > 127
    assert opaque(Status.CARD_PRESENT, centre_of_card)         # a solid card
    assert not opaque(Status.IDLE, centre_of_card)             # an empty slot
    assert not opaque(Status.NO_READER, centre_of_card)
    corner_badge = (SIZE * 84 // 100, SIZE * 10 // 100)
    assert not opaque(Status.IDLE, corner_badge)
    assert opaque(Status.IDLE, corner_badge, Claims.PENDING)
    assert opaque(Status.IDLE, corner_badge, Claims.FAILED)
    # The failed badge is square: its corner is filled where the round one is not.
    square_corner = (SIZE - 3, 2)
    assert opaque(Status.IDLE, square_corner, Claims.FAILED)
    assert not opaque(Status.IDLE, square_corner, Claims.PENDING)


# -- texts ------------------------------------------------------------------------------
def test_every_text_has_thai_and_english() -> None:
    for key, entry in i18n.TEXTS.items():
        assert set(entry) == {"th", "en"}, key
        assert all(entry.values()), key
        placeholders = [sorted(__import__("string").Formatter().parse(v)) for v in entry.values()]
        names = [{p[1] for p in ph if p[1]} for ph in placeholders]
        assert names[0] == names[1], key
    assert any("\u0e00" <= ch <= "\u0e7f" for ch in i18n.text("state.idle", "th"))


@pytest.mark.parametrize("env,expected", [
    ({"LANG": "th_TH.UTF-8"}, "th"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANGUAGE": "th:en", "LANG": "en_US.UTF-8"}, "th"),
    ({"LC_ALL": "C", "LANG": "th_TH.UTF-8"}, "th"),
    ({"LC_ALL": "en_GB.UTF-8", "LANG": "th_TH.UTF-8"}, "en"),
    ({}, "en"),
])
def test_system_language_follows_the_locale(env: dict, expected: str) -> None:
    assert i18n.system_language(env) == expected


def test_a_saved_choice_overrides_the_system() -> None:
    env = {"LANG": "th_TH.UTF-8"}
    assert i18n.resolve_language("auto", env) == "th"
    assert i18n.resolve_language("en", env) == "en"
    assert i18n.resolve_language(None, {"LANG": "en_US"}) == "en"


def test_a_claim_in_review_and_a_refused_token_need_attention() -> None:
    st = state_for(Status.IDLE)
    st.apply(ev("claim.queued", None))
    notices = st.apply(ev("claim.needs_review", None, id="c1", transactionId="t",
                          status="needs_review", reason="r", candidates=[]))
    assert [n.key for n in notices] == ["notify.claim_review"]
    assert (st.claims, st.claims_pending, st.claims_review) == (Claims.FAILED, 0, 1)
    # A refused token: told once, attention until NHSO accepts it again.
    st2 = state_for(Status.IDLE)
    refused = ev("nhso.token", None, state="refused", since="x", message="Invalid token.",
                 action_en="a", action_th="b")
    assert [n.key for n in st2.apply(refused)] == ["notify.token_refused"]
    assert st2.apply(refused) == [] and st2.claims is Claims.FAILED
    assert st2.apply(ev("nhso.token", None, state="accepted")) == []
    assert (st2.token_refused, st2.claims) == (False, Claims.NONE)
    st2.set_claims(0, 0, 3)
    assert st2.claims_review == 3
