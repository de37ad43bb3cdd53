"""A PC/SC that answers but cannot be used: the agent says "PC/SC unavailable", says why,
and keeps serving.

Wine's winscard is such a PC/SC: every call answers ``SCARD_F_INTERNAL_ERROR``. Here the real
``PcscBackend`` runs over pyscard with ``SCardEstablishContext`` answering that code, which
is the one call of pyscard replaced; the Windows bundle meets the real stub under Wine
(tests/test_installer_wine.py).
"""

from __future__ import annotations

from typing import Any

import pytest

from agent.assembly import build_app
from agent.config import Config
from agent.readers.base import ReaderState
from agent.readers.demo import DemoBackend
from agent.readers.factory import make_backend
from tests.api_support import ALLOWED

scard = pytest.importorskip("smartcard.scard")
from agent.readers import pcsc  # noqa: E402 - only once pyscard is known to load

WINE_ANSWER = "SCardEstablishContext: SCARD_F_INTERNAL_ERROR (0x80100001)"


@pytest.fixture
def stub_winscard(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyscard's context call answers as Wine's winscard.dll does."""
    monkeypatch.setattr(pcsc.scard, "SCardEstablishContext",
                        lambda scope: (scard.SCARD_F_INTERNAL_ERROR, 0))


async def _status_and_read(aiohttp_client: Any, backend: Any) -> tuple[dict[str, Any], Any]:
    app = build_app(Config(backend="pcsc", allowed_origins=(ALLOWED,)), backend=backend,
                    nhso=None)
    client = await aiohttp_client(app)
    status = await (await client.get("/v1/status")).json()
    read = await client.get("/api/smartcard/read")
    return status, read


async def test_a_stub_pcsc_is_reported_unavailable_with_the_reason(aiohttp_client,
                                                                   stub_winscard):
    status, read = await _status_and_read(aiohttp_client, pcsc.PcscBackend())
    assert status["pcsc"] == {"state": "unavailable", "error": "pcsc_unavailable",
                              "detail": WINE_ANSWER}
    # Still serving: a card request gets the error, with the reason, not a hang (418 is
    # what NHSO pages take for "no reader").
    assert read.status == 418
    body = await read.json()
    assert "pcsc_unavailable" in str(body) and WINE_ANSWER in str(body)


def test_auto_falls_back_to_the_demo_reader_on_a_stub_pcsc(stub_winscard):
    backend = make_backend("auto")
    try:
        assert backend.kind == "demo"
    finally:
        backend.close()


class _ListingFails(DemoBackend):
    """A reader layer whose every look at the readers fails with a reader error."""

    def snapshot(self) -> list[ReaderState]:
        raise pcsc.error_for(scard.SCARD_F_INTERNAL_ERROR, "SCardListReaders")


async def test_any_failure_of_the_first_look_is_unavailable_not_starting(aiohttp_client):
    status, read = await _status_and_read(aiohttp_client, _ListingFails())
    assert status["pcsc"] == {"state": "unavailable", "error": "reader_error",
                              "detail": "SCardListReaders: SCARD_F_INTERNAL_ERROR (0x80100001)"}
    assert read.status == 418
