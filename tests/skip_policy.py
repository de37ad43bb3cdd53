"""In CI a skipped test is a failed test, unless the skip is on ``ALLOWLIST``.

A skip in CI means the machine lacked something the test needs (a package, root, a free
rig), so the feature went unproven while the run still looked green. ``.ci/run`` sets
``CI=true``; with it, every skip (in setup, in the test, or of a whole module at
collection) is reported as a failure naming its reason, and the session exits non-zero.
Outside CI skips stay skips, so a developer machine without Chromium can still run the rest.

Loaded by ``tests/conftest.py``; ``tests/test_skip_policy.py`` runs pytest on small test
files to prove that a CI session with a skip fails and one with an allowlisted skip passes.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Allowed:
    nodeid: str          # fnmatch pattern on the test's node id
    reason: str          # substring the skip's reason must contain
    why: str             # why the CI machine cannot run it: keep this list short


# Everything the suite needs is installed by `scripts/setup.sh test` on the CI machine
# (Debian 12, root), so no skip is expected there today. An entry needs a reason the CI
# machine can never meet (another OS, hardware), not a missing package: add the package
# to setup.sh instead. Documented in README.md ("Tests").
ALLOWLIST: list[Allowed] = []


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def allowed(nodeid: str, reason: str) -> Allowed | None:
    for entry in ALLOWLIST:
        if fnmatch.fnmatchcase(nodeid, entry.nodeid) and entry.reason in reason:
            return entry
    return None


def _fail_unexpected_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = skip_reason(report)
    if allowed(report.nodeid, reason):
        return
    report.outcome = "failed"
    report.longrepr = (f"SKIPPED IN CI, which counts as a failure: {reason}\n"
                       "Install what the test needs (scripts/setup.sh test) or, if the CI "
                       "machine can never run it, add it to ALLOWLIST in tests/skip_policy.py "
                       "with the reason.")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    _fail_unexpected_skip(outcome.get_result())


_skipped_modules: list[str] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    # A module-level pytest.skip() skips every test in it at once. Turning that report into
    # a collection error would stop the whole session, so it is noted here and fails the
    # session at its end instead (with the other tests run).
    outcome = yield
    report = outcome.get_result()
    if in_ci() and report.skipped and not allowed(report.nodeid, skip_reason(report)):
        _skipped_modules.append(f"{report.nodeid}: {skip_reason(report)}")


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _skipped_modules:
        terminalreporter.section("skipped in CI (counts as a failure)", red=True)
        for line in _skipped_modules:
            terminalreporter.line(line)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_modules and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_report_header(config: pytest.Config) -> str:
    if in_ci():
        return f"CI=true: skips fail unless allowlisted ({len(ALLOWLIST)} entries)"
    return "skips allowed (CI is not set)"
