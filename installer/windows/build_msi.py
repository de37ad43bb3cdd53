#!/usr/bin/env python3
"""Builds thaicard-agent-<version>-x64.msi on Linux with wixl (apt: wixl msitools).

    python installer/windows/build_msi.py PAYLOAD_DIR OUTPUT.msi [--version V] [--work DIR]

PAYLOAD_DIR is the PyInstaller folder built on Windows (``thaicard-agent.exe``,
``thaicard-agent-tray.exe``, ``_internal/``). The source ``thaicard-agent.wxs`` is plain
WiX 3; wixl implements neither component conditions nor ``Property/@Secure``, so this script
builds from a copy without them and then writes them into the MSI's ``Component.Condition``
column and its ``SecureCustomProperties`` with msibuild. One source, two toolsets.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WXS = HERE / "thaicard-agent.wxs"
NS = "http://schemas.microsoft.com/wix/2006/wi"
REQUIRED_FILES = ("thaicard-agent.exe", "thaicard-agent-tray.exe")


@dataclass
class WixlSource:
    """The .wxs as wixl can read it, plus what had to be taken out to get there."""

    xml: str
    conditions: dict[str, str] = field(default_factory=dict)   # component id -> condition
    secure: list[str] = field(default_factory=list)            # property ids


def package_version(root: Path = ROOT) -> str:
    text = (root / "agent" / "__init__.py").read_text(encoding="utf-8")
    return re.search(r'^__version__\s*=\s*"([^"]+)"', text, re.M).group(1)


def msi_version(version: str) -> str:
    """MSI versions are three numbers (major < 256, minor < 256, build < 65536)."""
    numbers = [int(n) for n in re.findall(r"\d+", version.split("+")[0])[:3]]
    numbers += [0] * (3 - len(numbers))
    if numbers[0] > 255 or numbers[1] > 255 or numbers[2] > 65535:
        raise ValueError(f"version {version!r} does not fit an MSI ProductVersion")
    return ".".join(map(str, numbers))


def wixl_source(wxs_text: str) -> WixlSource:
    ET.register_namespace("", NS)
    root = ET.fromstring(wxs_text)
    out = WixlSource(xml="")
    for component in root.iter(f"{{{NS}}}Component"):
        for cond in component.findall(f"{{{NS}}}Condition"):
            out.conditions[component.get("Id", "")] = (cond.text or "").strip()
            component.remove(cond)
    for parent in root.iter():
        for prop in parent.findall(f"{{{NS}}}Property"):
            if prop.attrib.pop("Secure", "no") == "yes":
                out.secure.append(prop.get("Id", ""))
                if prop.get("Value") is None:     # only declared to be Secure
                    parent.remove(prop)
    for package in root.iter(f"{{{NS}}}Package"):
        package.attrib.pop("Platform", None)      # wixl takes the platform from -a x64
    out.xml = ET.tostring(root, encoding="unicode")
    return out


def harvest(payload: Path, work: Path) -> Path:
    """files.wxs for every file under ``payload`` (as ``payload/...`` seen from ``work``)."""
    files = sorted(p.relative_to(payload).as_posix() for p in payload.rglob("*") if p.is_file())
    listing = "".join(f"payload/{f}\n" for f in files)
    result = subprocess.run(
        ["wixl-heat", "--prefix", "payload/", "--directory-ref", "INSTALLDIR",
         "--component-group", "CG.Payload", "--var", "var.PayloadDir", "--win64"],
        input=listing, capture_output=True, text=True, check=True, cwd=work)
    out = work / "files.wxs"
    out.write_text(result.stdout, encoding="utf-8")
    return out


def _sql_text(value: str) -> str:
    if "'" in value:
        raise ValueError(f"cannot store {value!r} with msibuild (single quote)")
    return value


def apply_wixl_gaps(msi: Path, source: WixlSource) -> None:
    queries = [f"UPDATE `Component` SET `Condition` = '{_sql_text(cond)}' "
               f"WHERE `Component` = '{_sql_text(comp)}'"
               for comp, cond in source.conditions.items()]
    current = subprocess.run(["msiinfo", "export", str(msi), "Property"], check=True,
                             capture_output=True, text=True).stdout
    existing = next((line.split("\t", 1)[1] for line in current.splitlines()
                     if line.startswith("SecureCustomProperties\t")), "")
    secure = ";".join(dict.fromkeys([p for p in existing.split(";") if p] + source.secure))
    if existing:
        queries.append(f"UPDATE `Property` SET `Value` = '{_sql_text(secure)}' "
                       "WHERE `Property` = 'SecureCustomProperties'")
    else:
        queries.append("INSERT INTO `Property` (`Property`, `Value`) "
                       f"VALUES ('SecureCustomProperties', '{_sql_text(secure)}')")
    for query in queries:
        subprocess.run(["msibuild", str(msi), "-q", query], check=True)


def make_icon(work: Path) -> Path:
    icons = work / "icons"
    subprocess.run([sys.executable, str(ROOT / "installer" / "make_icons.py"), str(icons)],
                   check=True, stdout=subprocess.DEVNULL)
    return icons / "thaicard-agent.ico"


def build_msi(payload: Path, output: Path, *, version: str | None = None,
              work: Path | None = None, icon: Path | None = None) -> Path:
    payload = payload.resolve()
    missing = [f for f in REQUIRED_FILES if not (payload / f).is_file()]
    if missing:
        raise SystemExit(f"{payload} lacks {', '.join(missing)}: build the binary on Windows "
                         "first (installer/build_binary.sh)")
    for tool in ("wixl", "wixl-heat", "msibuild", "msiinfo"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install wixl msitools")
    version = version or package_version()
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="msi-")) if work is None else work
    work.mkdir(parents=True, exist_ok=True)
    try:
        # wixl only takes source paths relative to where it runs.
        link = work / "payload"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(payload, target_is_directory=True)
        policy = work / "policy"           # the ADMX/ADML templates, beside the payload
        if policy.is_symlink() or policy.exists():
            policy.unlink()
        policy.symlink_to(HERE / "policy", target_is_directory=True)
        icon = icon or make_icon(work)
        (work / "icon").mkdir(exist_ok=True)
        shutil.copyfile(icon, work / "icon" / "thaicard-agent.ico")

        source = wixl_source(WXS.read_text(encoding="utf-8"))
        main = work / "thaicard-agent.wxs"
        main.write_text(source.xml, encoding="utf-8")
        files = harvest(payload, work)
        output = output.resolve()
        output.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["wixl", "-a", "x64", "-D", f"Version={msi_version(version)}",
             "-D", "PayloadDir=payload", "-D", "IconDir=icon", "-D", "PolicyDir=policy",
             "-D", "Win64=yes",
             "-o", str(output), main.name, files.name],
            check=True, cwd=work, env={**os.environ, "G_MESSAGES_DEBUG": ""})
        apply_wixl_gaps(output, source)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("payload", type=Path, help="PyInstaller folder built on Windows")
    parser.add_argument("output", type=Path, help="the .msi to write")
    parser.add_argument("--version", help="default: agent.__version__")
    parser.add_argument("--work", type=Path, help="keep intermediate files here")
    parser.add_argument("--icon", type=Path, help=".ico (default: drawn by make_icons.py)")
    args = parser.parse_args(argv)
    out = build_msi(args.payload, args.output, version=args.version, work=args.work,
                    icon=args.icon)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
