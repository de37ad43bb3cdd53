"""The agent's own entry points over real PC/SC: the ``thaicard-agent`` CLI and the core."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.card.demo import demo_profile
from agent.card.simulator import ATR_3B67
from agent.core import CardService
from agent.errors import ERROR_TABLE
from agent.readers.pcsc import PcscBackend
from testrig.pcsc_rig import card_present, pcscd, slots, wait_states
from testrig.vpcd_card import READER_NAMES, VirtualCard
from tests.core_support import next_event

pytestmark = pytest.mark.pcsc

ROOT = Path(__file__).resolve().parent.parent


def agent_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed console command when present (what users run), else ``-m agent``."""
    script = shutil.which("thaicard-agent", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "agent"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def insert_and_wait(slots, card: VirtualCard, slot: int) -> VirtualCard:
    slots.insert(card, slot)
    backend = PcscBackend()
    try:
        wait_states(backend, card_present(card.reader))
    finally:
        backend.close()
    return card


def test_cli_readers_lists_the_real_readers(slots):
    card = insert_and_wait(slots, VirtualCard.demo(1, atr=ATR_3B67), slot=1)
    run = agent_cli("readers", "--backend", "pcsc")
    assert run.returncode == 0, run.stderr
    listed = {r["name"]: r for r in json.loads(run.stdout)}
    assert set(listed) >= set(READER_NAMES)
    assert listed[card.reader]["present"] is True
    assert listed[card.reader]["atr"] == ATR_3B67.hex(" ").upper()
    assert listed[READER_NAMES[0]] == {"name": READER_NAMES[0], "present": False, "atr": None}
    assert card.apdus == 0                # listing readers never talks to a card


def test_cli_read_reads_the_card_through_pcscd(slots, tmp_path):
    card = insert_and_wait(slots, VirtualCard.demo(1, atr=ATR_3B67), slot=1)
    photo = tmp_path / "face.jpg"
    run = agent_cli("read", "--backend", "pcsc", "--photo", str(photo))
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    expected = demo_profile(1)
    assert out["reader"] == card.reader                    # the reader that has a card
    assert out["citizen_id"] == expected.text.citizen_id
    assert out["name_th"]["full"] == expected.text.name_th.full(thai=True)
    assert out["card"]["atr"] == ATR_3B67.hex(" ").upper()
    assert out["read"]["apdus"] == card.apdus
    assert photo.read_bytes() == expected.photo


def test_cli_read_of_an_empty_reader_says_no_card(slots):
    run = agent_cli("read", "--backend", "pcsc", "--reader", READER_NAMES[0])
    info = ERROR_TABLE["no_card"]
    assert run.returncode == info.exit_code
    assert info.message_th in run.stderr and "[no_card]" in run.stderr
    assert "Traceback" not in run.stderr


def test_cli_without_the_service_says_pcsc_unavailable(pcscd):
    if not pcscd.owned:
        pytest.skip("pcscd was started outside the tests; it is not ours to stop")
    pcscd.stop()
    try:
        run = agent_cli("readers", "--backend", "pcsc")
    finally:
        pcscd.start()
    info = ERROR_TABLE["pcsc_unavailable"]
    assert run.returncode == info.exit_code, run.stderr
    assert info.message_th in run.stderr and "Traceback" not in run.stderr


async def test_core_reads_each_insertion_once_and_forgets_it_on_removal(pcscd, slots):
    svc = CardService(PcscBackend())
    await svc.start()
    try:
        assert set(svc.reader_names()) >= set(READER_NAMES)
        assert svc.pcsc_state() == "available"
        sub = svc.events.subscribe()
        card = slots.insert(VirtualCard.demo(0, apdu_delay=0.001), 0)
        await next_event(sub, "card.inserted", card.reader)
        read = await next_event(sub, "card.read", card.reader)
        photo = await next_event(sub, "card.photo", card.reader)
        assert read.payload["card"]["citizen_id"] == demo_profile(0).text.citizen_id
        assert photo.payload["size"] == len(demo_profile(0).photo)
        _, cached = await svc.get_card(card.reader, photo=True)
        assert cached.photo == demo_profile(0).photo and svc.reads == 1
        await asyncio.to_thread(card.remove)
        await next_event(sub, "card.removed", card.reader)
        info = next(r for r in svc.readers() if r["name"] == card.reader)
        assert info["present"] is False and info["status"] == "empty"
    finally:
        await svc.stop()
