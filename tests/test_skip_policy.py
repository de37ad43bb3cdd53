"""The CI skip policy itself (tests/skip_policy.py): pytest is run on small test files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SKIPS = '''
import pytest

def test_runs():
    assert True

def test_skips_in_the_test():
    pytest.skip("no frobnicator here")

@pytest.fixture
def needs_root():
    pytest.skip("needs root")

def test_skips_in_a_fixture(needs_root):
    pass

@pytest.mark.skipif(True, reason="marker says no")
def test_skipped_by_marker():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
'''

MODULE_SKIP = '''
import pytest
pytest.skip("whole module: no browser", allow_module_level=True)

def test_never_collected():
    pass
'''

PASSING = '''
def test_runs():
    assert True
'''


def run_pytest(tmp_path: Path, files: dict[str, str], *, ci: bool,
               conftest: str = "") -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ("tests.skip_policy",)\n' + conftest)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PYTHONPATH"] = str(ROOT)
    if ci:
        env["CI"] = "true"
    # -c /dev/null: the project's pytest settings (testpaths, addopts) stay out of it.
    return subprocess.run([sys.executable, "-m", "pytest", "-c", os.devnull, "--rootdir",
                           str(tmp_path), "-p", "no:cacheprovider", "-rA", str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_outside_ci_skips_are_skips(tmp_path):
    out = run_pytest(tmp_path, {"test_a.py": SKIPS}, ci=False)
    assert out.returncode == 0, out.stdout
    assert "= 1 passed, 3 skipped, 1 xfailed in" in out.stdout
    assert "SKIPPED IN CI" not in out.stdout


def test_in_ci_every_skip_fails_the_session(tmp_path):
    out = run_pytest(tmp_path, {"test_a.py": SKIPS}, ci=True)
    assert out.returncode == 1, out.stdout
    # A skip in the test is a failure; one in setup (fixture, skipif marker) an error.
    assert "1 failed, 1 passed, 1 xfailed, 2 errors" in out.stdout
    for reason in ("no frobnicator here", "needs root", "marker says no"):
        assert f"SKIPPED IN CI, which counts as a failure: {reason}" in out.stdout
    assert "xfailed" in out.stdout          # an expected failure is not a skip


def test_in_ci_a_module_level_skip_fails_the_session_after_the_rest_ran(tmp_path):
    out = run_pytest(tmp_path, {"test_a.py": PASSING, "test_b.py": MODULE_SKIP}, ci=True)
    assert out.returncode == 1, out.stdout
    assert "1 passed" in out.stdout
    assert "skipped in CI (counts as a failure)" in out.stdout
    assert "test_b.py: whole module: no browser" in out.stdout
    # The same session without the module-level skip passes: the failure is the skip's.
    (tmp_path / "test_b.py").unlink()
    assert run_pytest(tmp_path, {"test_a.py": PASSING}, ci=True).returncode == 0


def test_in_ci_an_allowlisted_skip_stays_a_skip(tmp_path):
    allow = ('import tests.skip_policy as policy\n'
             'policy.ALLOWLIST.append(policy.Allowed("test_a.py::test_skips_in_the_test",'
             ' "frobnicator", "no such hardware in CI"))\n')
    out = run_pytest(tmp_path, {"test_a.py": SKIPS}, ci=True, conftest=allow)
    assert out.returncode == 1, out.stdout      # the other two skips still fail
    assert "1 passed, 1 skipped, 1 xfailed" in out.stdout and "2 errors" in out.stdout
    assert "SKIPPED IN CI, which counts as a failure: no frobnicator" not in out.stdout


def test_the_allowlist_is_short_and_every_entry_says_why():
    from tests.skip_policy import ALLOWLIST

    assert len(ALLOWLIST) <= 5
    for entry in ALLOWLIST:
        assert entry.nodeid and entry.reason and len(entry.why) > 10, entry
