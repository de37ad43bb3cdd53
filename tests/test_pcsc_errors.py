"""PC/SC result codes -> the agent's typed errors (no pcscd needed)."""

from __future__ import annotations

import pytest

from agent.readers.pcsc import error_for

scard = pytest.importorskip("smartcard.scard")


@pytest.mark.parametrize("result, code", [
    (scard.SCARD_E_NO_SERVICE, "pcsc_unavailable"),
    (scard.SCARD_W_REMOVED_CARD, "card_removed"),
    (scard.SCARD_E_NO_SMARTCARD, "no_card"),
    (scard.SCARD_E_SHARING_VIOLATION, "reader_busy"),
    (scard.SCARD_E_TIMEOUT, "read_timeout"),
    (scard.SCARD_W_UNRESPONSIVE_CARD, "card_unresponsive"),
    (scard.SCARD_E_INVALID_PARAMETER, "reader_error"),
])
def test_result_codes_map_to_stable_error_codes(result, code):
    err = error_for(result, "SCardConnect 'Reader 0'")
    assert err.code == code and "SCardConnect" in err.detail
