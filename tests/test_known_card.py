"""Known answers for the card: hand-written card images (tests/known/card_images.py) read by
the agent and compared with hand-written expectations (tests/known/*.json).

Neither the images nor the expectations come from the agent's layout table or encoder, and
the card answering the APDUs (tests/known/doc_card.py) is written from the framing table of
docs/reference.md. So a swapped offset, a wrong codec, a name split after cleaning
or a photo cut at the wrong marker fails here even though the agent agrees with itself.

Three readers of the same bytes: the pure decoder in this process; the agent through the
real rig (pcscd + vpcd), as ``thaicard-agent read`` and as a running agent's ``/v1`` and
``/api/smartcard/read``; and the peer library pythaiidcard (its own venv), compared field
by field where it reads fully.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.card.decode import decode_laser_id, decode_nhso, decode_photo, decode_text_fields
from agent.card.session import read_card
from agent.readers.pcsc import PcscBackend
from testrig.pcsc_rig import card_present, pcscd, slots, wait_states
from testrig.robust_support import AgentProcess
from testrig.vpcd_card import READER_NAMES, VirtualCard
from tests.known import card_images as K
from tests.known.doc_card import DocCard

ROOT = Path(__file__).resolve().parent.parent
KNOWN = ROOT / "tests" / "known"
EXPECTED = {
    "EDGE": json.loads((KNOWN / "card_edge.read.json").read_text(encoding="utf-8")),
    "PLAIN": json.loads((KNOWN / "card_plain.read.json").read_text(encoding="utf-8")),
}
COMPAT = json.loads((KNOWN / "compat_expected.json").read_text(encoding="utf-8"))
# The fields the agent reads only on request (``read --nhso --laser``); a served card has none.
OPTIONAL_APPLETS = ("nhso_applet", "laser_id")


def doc_card(which: str) -> DocCard:
    """The card ``which`` as the documents say a card answers."""
    if which == "EDGE":
        return DocCard(K.ATR_TH_NID_11, K.EDGE, nhso=K.NHSO, laser_answer=K.LASER_ANSWER)
    return DocCard(K.ATR_NO_TH_NID, K.PLAIN)


def mismatches(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Every place where ``actual`` differs from ``expected`` (only keys ``expected`` has;
    keys starting with '_' are notes)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path or '.'}: expected an object, got {actual!r}"]
        out: list[str] = []
        for key, want in expected.items():
            if key.startswith("_"):
                continue
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                out += mismatches(want, actual[key], f"{path}.{key}")
        return out
    if expected != actual or type(expected) is not type(actual):
        return [f"{path}: expected {expected!r}, got {actual!r}"]
    return []


def without(expected: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in expected.items() if k not in keys}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- (a) the pure decoder on the hand-written images ------------------------------------------

@pytest.mark.parametrize("which", ["EDGE", "PLAIN"])
@pytest.mark.parametrize("text_first", [False, True], ids=["one-span", "text-first"])
def test_read_of_the_known_card_is_the_known_answer(which, text_first):
    card = doc_card(which)
    early: list[Any] = []
    result = read_card(card.process, card.atr, photo=True, nhso=which == "EDGE",
                       laser=which == "EDGE", on_text=early.append if text_first else None)
    expected = EXPECTED[which]
    if which == "PLAIN":
        assert "nhso_applet" not in result.to_json() and "laser_id" not in result.to_json()
    assert mismatches(expected, result.to_json()) == []
    assert result.photo == K.JPEG and sha256(result.photo) == expected["_photo_sha256"]
    if text_first:       # the early hand-over carries the same text fields
        assert mismatches(without(expected, "photo", *OPTIONAL_APPLETS),
                          early[0].to_json()) == []


@pytest.mark.parametrize("which", ["EDGE", "PLAIN"])
def test_decoders_on_the_documented_slices(which):
    """The decode functions, each given the file slice the documents name (offsets literal)."""
    image = K.EDGE if which == "EDGE" else K.PLAIN
    expected = EXPECTED[which]
    text = decode_text_fields(image[0x0000:0x017B], image[0x1579:0x1627]).to_json()
    assert mismatches(without(expected, "card", "photo", *OPTIONAL_APPLETS), text) == []
    photo = decode_photo(image[0x017B:0x017B + 5118])
    assert sha256(photo) == expected["_photo_sha256"] and len(photo) == expected["photo"]["size"]


def test_nhso_applet_and_laser_id_decoders():
    assert mismatches(EXPECTED["EDGE"]["nhso_applet"],
                      decode_nhso(K.NHSO[0x0004:0x015E]).to_json()) == []
    assert decode_laser_id(K.LASER_ANSWER) == EXPECTED["EDGE"]["laser_id"]


def test_request_number_is_the_documented_field():
    """docs/reference.md: 0x00E2/20 is the request number, 0x1619/14 the number printed
    under the photo."""
    card = doc_card("EDGE")
    out = read_card(card.process, card.atr).to_json()
    assert out["request_number"]["raw"] == "10040123456/12345678"
    assert out["number_under_photo"]["raw"] == "10040812345678"


@pytest.mark.parametrize("text_first", [False, True], ids=["one-span", "text-first"])
def test_photo_read_stops_near_the_cards_own_photo_length(text_first):
    card = doc_card("PLAIN")
    result = read_card(card.process, card.atr, on_text=(lambda _: None) if text_first else None)
    assert result.photo == K.JPEG
    photo_end = 0x017B + len(K.JPEG)
    beyond = 0
    for c in card.commands:
        if c[:2] == b"\x80\xb0":
            start, end = c[2] << 8 | c[3], (c[2] << 8 | c[3]) + c[6]
            beyond += max(0, min(end, 0x1579) - max(start, photo_end))
    assert beyond < 255        # at most the rest of the read that holds the JPEG's end


def test_the_doc_card_follows_the_documented_framing():
    """The stand-in card itself: GET RESPONSE P2 by the ATR rule, 61 LL then data."""
    card = doc_card("PLAIN")
    assert card.process(bytes.fromhex("00A4040008A000000054480001")) == bytes.fromhex("610A")
    assert card.process(bytes.fromhex("80B000040200 0D".replace(" ", ""))) == b"\x61\x0d"
    assert card.process(bytes.fromhex("00C000010D")) == b"\x6b\x00"      # not a 3B 67 card
    assert card.process(bytes.fromhex("00C000000D")) == b"1101700203450\x90\x00"
    gen67 = DocCard(bytes.fromhex("3B67000000000000000000"), K.PLAIN)
    gen67.process(bytes.fromhex("00A4040008A000000054480001"))
    gen67.process(bytes.fromhex("80B000E1020001"))
    assert gen67.process(bytes.fromhex("00C0000101")) == b"1\x90\x00"


def test_a_3b67_card_is_read_with_p2_01():
    card = DocCard(bytes.fromhex("3B67000000000000000000"), K.PLAIN)
    out = read_card(card.process, card.atr, photo=False).to_json()
    assert out["citizen_id"] == EXPECTED["PLAIN"]["citizen_id"]
    fetches = [c for c in card.commands if c[:2] == b"\x00\xc0"]
    assert fetches and all(c[3] == 0x01 for c in fetches)


# -- (b) through the real rig: pcscd + vpcd + the doc card ------------------------------------

pcsc = pytest.mark.pcsc


@pytest.fixture
def rig_slots(slots: Any) -> Any:
    """The rig's own ``slots`` (its pcscd, lock and skip-or-fail policy), under a name that
    says these tests need the real rig."""
    return slots


def insert_known(slots: Any, which: str, slot: int) -> Any:
    card = slots.insert(VirtualCard(doc_card(which)), slot)
    backend = PcscBackend()
    try:
        wait_states(backend, card_present(card.reader), timeout=20)
    finally:
        backend.close()
    return card


def agent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=90, cwd=ROOT)


@pcsc
@pytest.mark.parametrize("which,slot", [("EDGE", 0), ("PLAIN", 1)])
def test_cli_read_over_pcscd_is_the_known_answer(rig_slots, tmp_path, which, slot):
    card = insert_known(rig_slots, which, slot)
    photo = tmp_path / "face.jpg"
    extra = ["--nhso", "--laser"] if which == "EDGE" else []
    run = agent_cli("read", "--backend", "pcsc", "--reader", card.reader,
                    "--photo", str(photo), *extra)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["reader"] == card.reader
    assert mismatches(EXPECTED[which], out) == []
    assert sha256(photo.read_bytes()) == EXPECTED[which]["_photo_sha256"]


@pytest.fixture
def pcsc_agent(rig_slots: Any) -> Iterator[Any]:
    agent = AgentProcess(backend="pcsc", log_level="INFO")
    agent.start()
    try:
        agent.wait_listening(60)
        agent.wait_status(lambda s: {r["name"] for r in s["readers"]} >= set(READER_NAMES), 60)
        yield agent
    finally:
        code = agent.stop()
        assert code == 0, agent.log_text()[-3000:]


def wait_read(agent: Any, reader: str) -> None:
    agent.wait_status(lambda s: any(r["name"] == reader and r.get("status") == "ready"
                                    for r in s["readers"]), 60)


def compat_read(agent: Any, reader: str) -> dict[str, Any]:
    query = urllib.parse.urlencode({"readImageFlag": "true", "terminal": reader})
    status, body = agent.get(f"/api/smartcard/read?{query}")
    assert status == 200, body[:500]
    return json.loads(body)


@pytest.fixture
def served_cards(pcsc_agent: Any, rig_slots: Any) -> dict[str, str]:
    """Both known cards in the two slots of a running agent, read; which -> reader name."""
    readers = {which: insert_known(rig_slots, which, slot).reader
               for which, slot in (("EDGE", 0), ("PLAIN", 1))}
    for reader in readers.values():
        wait_read(pcsc_agent, reader)
    return readers


@pcsc
def test_running_agent_serves_the_known_cards(pcsc_agent, served_cards):
    for which, reader in served_cards.items():
        status, body = pcsc_agent.get(
            f"/v1/readers/{urllib.parse.quote(reader, safe='')}/card?photo=1")
        assert status == 200, body[:500]
        view = json.loads(body)
        assert view["reader"] == reader
        expected = without(EXPECTED[which], *OPTIONAL_APPLETS)
        assert mismatches(expected, view["card"]) == [], which
        photo = base64.b64decode(view["card"]["photo"]["base64"])
        assert sha256(photo) == EXPECTED[which]["_photo_sha256"], which


@pcsc
def test_running_agent_serves_the_opt_in_applets_on_request(pcsc_agent, served_cards):
    """nhso=1 and laser=1 on /v1: the applets read (in a transaction of their own) when
    asked; a card without them answers null and laser_unavailable beside the card."""
    edge = urllib.parse.quote(served_cards["EDGE"], safe="")
    status, body = pcsc_agent.get(f"/v1/readers/{edge}/card?nhso=1&laser=1")
    assert status == 200, body[:500]
    card = json.loads(body)["card"]
    assert mismatches({k: EXPECTED["EDGE"][k] for k in OPTIONAL_APPLETS}, card) == []
    assert card["laser_id_command"] == "80 00 00 00"          # the first form answered
    plain = urllib.parse.quote(served_cards["PLAIN"], safe="")
    status, body = pcsc_agent.get(f"/v1/readers/{plain}/card?nhso=1&laser=1")
    assert status == 200, body[:500]
    card = json.loads(body)["card"]
    assert card["nhso_applet"] is None and "laser_id" not in card
    assert card["laser_error"]["code"] == "laser_unavailable"
    assert card["citizen_id"] == EXPECTED["PLAIN"]["citizen_id"]


def completed_years(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


@pcsc
def test_compat_read_is_the_documented_shape(pcsc_agent, served_cards):
    """docs/integration.md: the values hospital pages read, in the NHSO agent's formats."""
    for which, reader in served_cards.items():
        out = compat_read(pcsc_agent, reader)
        want = COMPAT[which]
        assert mismatches(want, out) == [], which
        assert sha256(base64.b64decode(out["image"])) == want["_image_sha256"]
        assert not out["image"].startswith("data:")          # raw base64, no data: prefix
        stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")   # local time, no zone
        assert stamp.match(out["transDate"]) and stamp.match(out["checkDate"])
        uuid.UUID(out["correlationId"])
    plain = compat_read(pcsc_agent, served_cards["PLAIN"])
    age = re.fullmatch(r"(\d+) ปี (\d+) เดือน (\d+) วัน", plain["age"])
    assert age, plain["age"]
    today = dt.date.today()
    assert int(age[1]) in {completed_years(dt.date(1987, 1, 15), today),
                           completed_years(dt.date(1987, 1, 15), today - dt.timedelta(1))}
    edge = compat_read(pcsc_agent, served_cards["EDGE"])
    # Only the year of birth is known (BE 2523 = 1980): the age cannot claim months or days.
    assert re.fullmatch(r"\d+ ปี", edge["age"]), edge["age"]
    assert int(edge["age"].split()[0]) in {today.year - 1980, today.year - 1981}


@pcsc
def test_compat_card_only_and_terminals(pcsc_agent, served_cards):
    """docs/integration.md: read-card-only is the card's part alone, terminals lists
    ``{terminalName, isPresent}``."""
    for which, reader in served_cards.items():
        query = urllib.parse.urlencode({"readImageFlag": "false", "terminal": reader})
        status, body = pcsc_agent.get(f"/api/smartcard/read-card-only?{query}")
        assert status == 200, body[:500]
        out = json.loads(body)
        assert mismatches(COMPAT[which], out) == [], which
        assert "image" not in out                     # not asked for
        assert not set(COMPAT["_coverage_keys"]) & set(out)
    status, body = pcsc_agent.get("/api/smartcard/terminals")
    assert status == 200
    listed = {t["terminalName"]: t["isPresent"] for t in json.loads(body)}
    assert {listed.get(reader) for reader in served_cards.values()} == {True}


@pcsc
def test_compat_read_always_carries_the_coverage_keys(pcsc_agent, served_cards):
    """Callers index the coverage keys directly (null handled, missing crashes): issue 14
    keeps them in every answer, null without a token."""
    out = compat_read(pcsc_agent, served_cards["PLAIN"])
    missing = [k for k in COMPAT["_coverage_keys"] if k not in out]
    assert missing == []
    assert isinstance(out["claimTypes"], list)


# -- (c) the peer library pythaiidcard on the same card ---------------------------------------

PEER_PYTHON = ROOT / ".venv-peer" / "bin" / "python"


def peer_read(reader: str, *, nhso_only: bool = False) -> dict[str, Any]:
    if not PEER_PYTHON.exists():
        message = (f"PEER NOT RUN: {PEER_PYTHON} is missing; `scripts/setup.sh test` installs "
                   "pythaiidcard there")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    run = subprocess.run([str(PEER_PYTHON), str(KNOWN / "peer_read.py"), "--reader", reader,
                          *(["--nhso-only"] if nhso_only else [])],
                         capture_output=True, text=True, timeout=90, cwd=ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    return json.loads(run.stdout)


@pcsc
def test_peer_reads_the_plain_card_as_we_do(rig_slots, tmp_path):
    """pythaiidcard reads the PLAIN card fully; compare what it reads as the card holds it.

    Where the peer is known to lose data, the comparison says so instead of skipping it:
    it replaces '#' with spaces before splitting names and addresses (docs/reference.md: "one
    peer ... put the whole name into the prefix"), and reads 20 x 255 photo bytes without
    cutting at the end marker.
    """
    card = insert_known(rig_slots, "PLAIN", 1)
    run = agent_cli("read", "--backend", "pcsc", "--reader", card.reader,
                    "--photo", str(tmp_path / "ours.jpg"))
    assert run.returncode == 0, run.stderr
    ours = json.loads(run.stdout)
    peer = peer_read(card.reader)

    assert peer["cid"] == ours["citizen_id"]
    assert peer["date_of_birth"] == ours["birth_date"]["iso"]
    assert peer["issue_date"] == ours["issue_date"]["iso"]
    assert peer["expire_date"] == ours["expiry_date"]["iso"]
    assert peer["gender"] == ours["gender"]["raw"]
    assert peer["card_issuer"] == ours["issuer"]
    for lang in ("name_th", "name_en"):
        # The peer's whole name lands in its prefix, '#' turned into spaces.
        assert peer[lang]["prefix"] == " ".join(
            ours[lang][p] for p in ("prefix", "first", "middle", "last")), lang
    # The address is short enough for the peer's 100-byte read; with '#' gone, it finds
    # the province, district and subdistrict by their Thai prefixes.
    assert peer["address"]["province"] == ours["address"]["province"]
    assert peer["address"]["district"] == ours["address"]["district"]
    assert peer["address"]["subdistrict"] == ours["address"]["subdistrict"]
    # The peer's 5100 photo bytes start with exactly our JPEG, then the card's 0x20 fill.
    peer_photo = bytes.fromhex(peer["photo"]["hex"])
    ours_photo = (tmp_path / "ours.jpg").read_bytes()
    assert peer["photo"]["length"] == 5100
    assert peer_photo[:len(ours_photo)] == ours_photo
    assert peer_photo[len(ours_photo):].strip(b" ") == b""


@pcsc
def test_peer_reads_the_nhso_applet_as_we_do(rig_slots):
    card = insert_known(rig_slots, "EDGE", 0)
    run = agent_cli("read", "--backend", "pcsc", "--reader", card.reader, "--no-photo",
                    "--nhso")
    assert run.returncode == 0, run.stderr
    ours = json.loads(run.stdout)["nhso_applet"]
    # The peer's card model refuses EDGE's partial birth date and lifelong expiry, so only
    # its NHSO reader is compared on this card.
    peer = peer_read(card.reader, nhso_only=True)
    assert peer == {
        "main_inscl": ours["main_inscl"], "sub_inscl": ours["sub_inscl"],
        "main_hospital": ours["main_hospital"], "sub_hospital": ours["sub_hospital"],
        "paid_type": ours["paid_type"], "issue_date": ours["issue_date"]["iso"],
        "expire_date": ours["expiry_date"]["iso"], "update_date": ours["update_date"]["iso"],
        "change_count": ours["change_count"]}
