"""Suite-wide hooks: in CI a skip is a failure unless allowlisted (tests/skip_policy.py);
the rig's tests and the rest can run as two lanes at once (tests/lanes.py); the Windows
build under Wine starts in the background once its tests are collected."""

from __future__ import annotations

import shutil

import pytest

pytest_plugins = ("tests.skip_policy", "tests.lanes")


def pytest_collection_finish(session: pytest.Session) -> None:
    # The build takes minutes; started now, it runs while the tests before it do.
    if shutil.which("wine") and any(item.path.name == "test_installer_wine.py"
                                    for item in session.items):
        from tests.installer_support import wine_build_started

        wine_build_started()
