"""The log redaction promise (docs/admin.md, docs/nhso.md): whatever reaches a log handler,
a citizen id, a card photo or the NHSO token is masked, whichever way it was written.

Each row of the tables is one way such a value can end up in a log line: the message
itself, its ``%`` args, an exception's traceback, a stack dump, aiohttp's access log. The
filter is tested through real ``logging`` handlers, as the agent installs it, and the
secret must be gone from the output while the text around it survives (a filter that
dropped whole lines would hide support information, and would pass a "not in" check).
"""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.card.demo import make_citizen_id
from agent.logging_setup import LOG_FILE, RedactingFilter, redact, setup_logging

PID = make_citizen_id("310060012345")           # a valid id: check digit computed
PRINTED = f"{PID[0]}-{PID[1:5]}-{PID[5:10]}-{PID[10:12]}-{PID[12]}"
SPACED = PRINTED.replace("-", " ")
THAI_DIGITS = PID.translate(str.maketrans("0123456789", "๐๑๒๓๔๕๖๗๘๙"))
TOKEN = "9f1c2d3e-4b5a-6789-abcd-ef0123456789"
PHOTO = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4 + b"\xff\xd9").decode()

# (case id, text containing a secret, the secret, text that must stay)
ID_CASES: list[tuple[str, str, str, str]] = [
    ("plain", f"read card of {PID} done", PID, "read card of"),
    ("printed", f"id {PRINTED} on the card", PRINTED, "on the card"),
    ("spaces", f"id {SPACED} typed by staff", SPACED, "typed by staff"),
    ("thai-digits", f"เลข {THAI_DIGITS} ครับ", THAI_DIGITS, "ครับ"),
    ("json", json.dumps({"pid": PID, "status": "queued"}), PID, '"status": "queued"'),
    ("json-printed", json.dumps({"citizenId": PRINTED}), PRINTED, "citizenId"),
    ("url-path", f"GET /api/nhso-service/latest-authen-code/{PID} HTTP/1.1", PID,
     "latest-authen-code/"),
    ("url-query", f"GET /v1/nhso/authen-status?pid={PID}&date=2026-03-10", PID,
     "&date=2026-03-10"),
    ("file-path", f"wrote /tmp/cards/{PID}.jpg", PID, ".jpg"),
    ("glued-to-letters", f"pid{PID}x", PID, "pid"),
    ("repr", repr({"pid": PID}), PID, "'pid'"),
]

TOKEN_CASES: list[tuple[str, str, str, str]] = [
    ("bearer-header", f"Authorization: Bearer {TOKEN}", TOKEN, "Authorization"),
    ("bearer-lower", f"authorization: bearer {TOKEN}", TOKEN, "authorization"),
    ("bearer-in-json", json.dumps({"Authorization": f"Bearer {TOKEN}"}), TOKEN,
     "Authorization"),
    ("bearer-in-repr", repr({"Authorization": f"Bearer {TOKEN}"}), TOKEN, "Authorization"),
    ("basic-header", "Authorization: Basic dXNlcjpzM2NyM3Q=", "dXNlcjpzM2NyM3Q=",
     "Authorization"),
    ("query-token", f"GET /x?token={TOKEN}&hcode=10699", TOKEN, "&hcode=10699"),
    ("query-access-token", f"/cb?access_token={TOKEN}", TOKEN, "/cb?"),
    ("json-token", json.dumps({"token": TOKEN, "hcode": "10699"}), TOKEN, '"hcode"'),
    ("json-camel", json.dumps({"accessToken": TOKEN}), TOKEN, "accessToken"),
    ("json-no-space", f'{{"token":"{TOKEN}"}}', TOKEN, "token"),
    ("repr-token", repr({"token": TOKEN}), TOKEN, "'token'"),
    ("assignment", f"token = {TOKEN}", TOKEN, "token"),
    ("header-x-token", f"X-Token: {TOKEN}", TOKEN, "X-Token"),
]

PHOTO_CASES: list[tuple[str, str, str, str]] = [
    ("photo-raw", f"photo {PHOTO} end", PHOTO, "end"),
    ("photo-json", json.dumps({"photo": PHOTO, "reader": "R1"}), PHOTO, '"reader": "R1"'),
    ("photo-data-url", f"<img src=\"data:image/jpeg;base64,{PHOTO}\">", PHOTO,
     "data:image/jpeg;base64,"),
]

ALL_CASES = ID_CASES + TOKEN_CASES + PHOTO_CASES


def ids(cases: list[tuple[str, str, str, str]]) -> list[str]:
    return [c[0] for c in cases]


class Capture:
    """A logger whose one handler carries the agent's filter, writing to a string."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        self.handler.addFilter(RedactingFilter())
        self.logger = logging.getLogger(f"test-privacy-{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.logger.addHandler(self.handler)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def close(self) -> None:
        self.logger.removeHandler(self.handler)


@pytest.fixture
def capture() -> Iterator[Capture]:
    cap = Capture()
    yield cap
    cap.close()


def test_the_table_secrets_are_what_they_claim() -> None:
    # A typo in the table (an invalid id, a short photo) would test nothing real.
    from agent.card.values import citizen_id_valid
    assert citizen_id_valid(PID)
    assert len(PHOTO) > 1000 and PHOTO.startswith("/9j/")


@pytest.mark.parametrize(("case", "text", "secret", "kept"), ALL_CASES, ids=ids(ALL_CASES))
def test_redact_masks_the_secret_and_keeps_the_rest(case: str, text: str, secret: str,
                                                    kept: str) -> None:
    out = redact(text)
    assert secret not in out
    assert kept in out
    assert "[pid]" in out or "[redacted]" in out or "[base64]" in out


@pytest.mark.parametrize(("case", "text", "secret", "kept"), ALL_CASES, ids=ids(ALL_CASES))
def test_in_the_message(capture: Capture, case: str, text: str, secret: str,
                        kept: str) -> None:
    capture.logger.info(text)
    assert secret not in capture.text and kept in capture.text


@pytest.mark.parametrize(("case", "text", "secret", "kept"), ALL_CASES, ids=ids(ALL_CASES))
def test_in_the_args(capture: Capture, case: str, text: str, secret: str,
                     kept: str) -> None:
    capture.logger.warning("value: %s (%d)", text, 7)
    assert secret not in capture.text
    assert kept in capture.text and "value:" in capture.text and "(7)" in capture.text


def test_in_mapping_args(capture: Capture) -> None:
    capture.logger.info("claim for %(pid)s with %(auth)s", {"pid": PID,
                                                            "auth": f"Bearer {TOKEN}"})
    assert PID not in capture.text and TOKEN not in capture.text
    assert "claim for [pid] with Bearer [redacted]" in capture.text


@pytest.mark.parametrize(("case", "text", "secret", "kept"), ALL_CASES, ids=ids(ALL_CASES))
def test_in_a_traceback(capture: Capture, case: str, text: str, secret: str,
                        kept: str) -> None:
    try:
        raise ValueError(text)
    except ValueError:
        capture.logger.exception("request failed")
    assert "Traceback" in capture.text and "ValueError" in capture.text
    assert secret not in capture.text and kept in capture.text


def test_in_a_chained_traceback_and_a_stack_dump(capture: Capture) -> None:
    try:
        try:
            raise KeyError(PID)
        except KeyError as exc:
            raise RuntimeError(f"Authorization: Bearer {TOKEN}") from exc
    except RuntimeError:
        capture.logger.error("failed", exc_info=True, stack_info=True)
    assert "KeyError" in capture.text and "Stack (most recent call last)" in capture.text
    assert PID not in capture.text and TOKEN not in capture.text


def test_a_traceback_formatted_earlier_is_still_redacted(capture: Capture) -> None:
    # A handler earlier in the chain may have cached exc_text before ours ran.
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, None)
    record.exc_text = f"Traceback...\nValueError: {PID} {TOKEN and 'token=' + TOKEN}"
    capture.handler.handle(record)
    assert PID not in capture.text and TOKEN not in capture.text
    assert "ValueError" in capture.text


def test_a_bad_format_string_keeps_the_record_without_its_args(capture: Capture) -> None:
    capture.logger.info("two %s %s but one arg", PID)
    assert "two %s %s but one arg" in capture.text and PID not in capture.text


def test_a_non_string_message(capture: Capture) -> None:
    capture.logger.info(ValueError(PID))
    capture.logger.info({"token": TOKEN})
    assert PID not in capture.text and TOKEN not in capture.text
    assert capture.text.count("INFO") == 2


def test_nothing_else_is_touched(capture: Capture) -> None:
    # Codes, hcodes, 12- and 14-digit numbers, claim ids: support needs them.
    line = ("claim 5b7c8a4e-0000-4000-8000-000000000001 EP0000000001 hcode 10699 "
            "seq 123456789012 big 12345678901234 tokenConfigured=true")
    capture.logger.info(line)
    assert capture.text == f"INFO {line}\n"


def test_setup_logging_filters_the_file_and_the_console(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        path = setup_logging("DEBUG", log_dir=tmp_path, console=True)
        assert path == tmp_path / LOG_FILE
        logging.getLogger("agent.nhso.client").info("sent %s with Bearer %s", PID, TOKEN)
        # aiohttp's access log carries request lines whose paths hold citizen ids.
        logging.getLogger("aiohttp.access").info(
            '127.0.0.1 "GET /api/nhso-service/latest-authen-code/%s HTTP/1.1" 200', PID)
        for handler in root.handlers:
            handler.flush()
        written = path.read_text(encoding="utf-8")
        console = capsys.readouterr().err
        for out in (written, console):
            assert PID not in out and TOKEN not in out
            assert "sent [pid] with Bearer [redacted]" in out
            assert "latest-authen-code/[pid] HTTP/1.1" in out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
