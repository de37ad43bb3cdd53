"""The command line: demo reads, readers, help, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__
from agent.card.demo import demo_profile
from agent.errors import ERROR_TABLE, error_table_markdown

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)


def test_demo_read_prints_the_whole_card(tmp_path):
    photo = tmp_path / "face.jpg"
    run = cli("read", "--demo", "--photo", str(photo))
    assert run.returncode == 0, run.stderr
    card = json.loads(run.stdout)
    expected = demo_profile(0)
    assert card["citizen_id"] == expected.text.citizen_id and card["citizen_id_valid"]
    assert card["name_th"]["full"] == expected.text.name_th.full(thai=True)
    assert card["name_en"]["last"] == expected.text.name_en.last
    assert card["birth_date"]["iso"] == "1987-01-15"
    assert card["address"]["province"] == "นนทบุรี"
    assert card["number_under_photo"]["formatted"].count("-") == 2
    assert card["request_number"]["well_formed"]
    # The demo card states its photo's length: only that many photo bytes are read.
    assert card["read"]["apdus"] == 1 + 2 * (2 + 1 + -(-card["card"]["photo_length"] // 255))
    assert card["reader"] and card["card"]["atr"]
    assert photo.read_bytes() == expected.photo
    assert card["photo"] == {"size": len(expected.photo), "format": "image/jpeg",
                             "file": str(photo)}


def test_demo_readers():
    run = cli("readers", "--demo")
    assert run.returncode == 0, run.stderr
    readers = json.loads(run.stdout)
    assert readers[0]["present"] is True and readers[0]["atr"].startswith("3B")


def test_unknown_reader_is_a_clear_error_not_a_traceback():
    run = cli("read", "--demo", "--reader", "Nope")
    assert run.returncode == ERROR_TABLE["reader_not_found"].exit_code
    assert "Traceback" not in run.stderr
    assert ERROR_TABLE["reader_not_found"].message_th in run.stderr
    assert "[reader_not_found]" in run.stderr


@pytest.mark.parametrize("args", [(), ("read",), ("readers",)])
def test_help_everywhere(args):
    run = cli(*args, "--help")
    assert run.returncode == 0 and "usage:" in run.stdout


def test_version():
    run = cli("--version")
    assert run.stdout.strip() == f"thaicard-agent {__version__}"


def test_error_docs_are_generated_from_the_table():
    doc = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert error_table_markdown() in doc, \
        "docs/errors.md is stale: python -m agent.errors > docs/errors.md"


def test_read_asks_for_the_opt_in_applets():
    """The demo card has neither applet: both are reported beside the card, exit 0."""
    run = cli("read", "--demo", "--no-photo", "--nhso", "--laser")
    assert run.returncode == 0, run.stderr
    card = json.loads(run.stdout)
    assert card["nhso_applet"] is None
    assert card["laser_error"]["code"] == "laser_unavailable" and "laser_id" not in card
    assert card["citizen_id"] == demo_profile(0).text.citizen_id
