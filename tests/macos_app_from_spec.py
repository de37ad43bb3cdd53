"""Lays out ``Thai Card Agent.app`` on Linux the way the spec's macOS branch would, from the
Linux frozen bundle; run as a script (it changes ``sys.platform`` and PyInstaller's global
state, so it never runs inside the pytest process):

    python tests/macos_app_from_spec.py LINUX_BUNDLE_DIR OUT_DIR ICON_DIR

``installer/thaicard-agent.spec`` is executed with ``sys.platform`` set to ``"darwin"``.
Its module-level code (hidden imports, excludes, icon, the two EXEs' settings) runs as
written, PyInstaller's ``collect_*`` helpers included. Only what needs a Mac is replaced:

- ``Analysis`` and ``PYZ`` do not analyse again (a Mac's analysis would find Mach-O
  files): the Linux bundle's ``_internal`` files stand for ``a.binaries`` (ELF files and
  symlinks) and ``a.datas`` (the rest), which is how PyInstaller itself sorts them;
- ``EXE`` builds nothing: it stands for the Linux bundle's executable of the same name,
  with the spec's own settings (``console``, signing identity, ...);
- ``COLLECT`` is PyInstaller's own class, minus its copy into a folder (BUNDLE does that);
- ``BUNDLE`` is PyInstaller's own class, told it runs on macOS: its own rules place every
  file in ``Contents/MacOS``, ``Frameworks`` or ``Resources`` with its cross-links, and
  write ``Info.plist``. Its code signing needs a Mac and is skipped with a warning.

Prints one JSON object: the arguments the spec gave (hidden imports, excludes, each EXE's
settings) and the path of the ``.app``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from PyInstaller.building import api, osx
from PyInstaller.config import CONF

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "installer" / "thaicard-agent.spec"
ELF_MAGIC = b"\x7fELF"


def bundle_tocs(contents: Path) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(binaries, datas) of a built one-folder bundle's contents folder."""
    binaries, datas = [], []
    for path in sorted(contents.rglob("*")):
        dest = str(path.relative_to(contents))
        if path.is_symlink():
            binaries.append((dest, os.readlink(path), "SYMLINK"))
        elif path.is_file():
            with path.open("rb") as fh:
                is_binary = fh.read(4) == ELF_MAGIC
            (binaries if is_binary else datas).append((dest, str(path), "BINARY" if is_binary
                                                       else "DATA"))
    return binaries, datas


class Analysis:
    def __init__(self, scripts: list[str], **kwargs: Any) -> None:
        recorded["analysis"] = {"hiddenimports": sorted(kwargs["hiddenimports"]),
                                "excludes": sorted(kwargs["excludes"])}
        self.binaries, self.datas = bundle_tocs(linux_bundle / "_internal")
        self.scripts: list[Any] = []
        self.pure: list[Any] = []


def PYZ(pure: list[Any]) -> None:  # the spec's name
    return None


def EXE(*args: Any, **kwargs: Any) -> api.EXE:  # the spec's name
    """The Linux bundle's executable of this name, carrying the spec's settings."""
    exe = api.EXE.__new__(api.EXE)
    exe.name = str(linux_bundle / kwargs["name"])
    exe.console = kwargs.get("console", True)
    exe.exclude_binaries = kwargs.get("exclude_binaries", False)
    exe.strip, exe.upx, exe.upx_exclude = kwargs.get("strip", False), False, []
    exe.target_arch = kwargs.get("target_arch")
    exe.codesign_identity = kwargs.get("codesign_identity")
    exe.entitlements_file = kwargs.get("entitlements_file")
    exe.contents_directory, exe.append_pkg = "_internal", True
    exe.dependencies, exe.toc = [], []
    recorded["exe"][kwargs["name"]] = {"console": exe.console, "icon": kwargs.get("icon")}
    return exe


def BUNDLE(*args: Any, **kwargs: Any) -> None:  # the spec's name
    recorded["bundle_args"] = (args, kwargs)


def main() -> None:
    global linux_bundle
    linux_bundle = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2]).resolve()
    os.environ["THAICARD_ICON_DIR"] = sys.argv[3]
    CONF.update(workpath=str(out / "work"), distpath=str(out / "dist"), specpath=str(SPEC.parent),
                upx_available=False, cachedir=str(out / "cache"))
    for folder in ("work", "dist"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    # COLLECT's own folder is not needed: BUNDLE copies the files into the .app.
    api.COLLECT.assemble = lambda self: None   # type: ignore[method-assign]  # see above

    real_platform = sys.platform
    sys.platform = "darwin"
    try:
        spec_globals = {"__file__": str(SPEC), "SPECPATH": str(SPEC.parent),
                        "Analysis": Analysis, "PYZ": PYZ, "EXE": EXE, "COLLECT": api.COLLECT,
                        "BUNDLE": BUNDLE}
        exec(compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec"), spec_globals)
    finally:
        sys.platform = real_platform
    if "bundle_args" not in recorded:
        raise SystemExit("the spec made no BUNDLE on macOS")
    args, kwargs = recorded.pop("bundle_args")
    osx.is_darwin = True
    app = osx.BUNDLE(*args, **kwargs)
    recorded["app"] = app.name
    print(json.dumps(recorded))


linux_bundle = Path()
recorded: dict[str, Any] = {"exe": {}}

if __name__ == "__main__":
    main()
