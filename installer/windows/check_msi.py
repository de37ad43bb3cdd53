#!/usr/bin/env python3
"""Checks what a built thaicard-agent MSI will do, from its tables (msitools' msiinfo).

    python installer/windows/check_msi.py thaicard-agent.msi [--version 0.1.0]

Prints each problem and exits 1 if there is any. Used by the tests and by the release
workflow before the MSI is signed. ICE validation proper needs Windows; this checks the
promises made to admins: per-machine x64, files in Program Files, Start-menu shortcut,
auto-start through HKLM Run, the agent policy and the browser policies, MajorUpgrade, and
nothing left behind on uninstall.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UPGRADE_CODE = "{9787883D-7D2C-4132-B040-53259C218260}"
NHSO_AUTHEN_ORIGIN = "https://authenservice.nhso.go.th"
HKLM = "2"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"
POLICY_KEY = r"Software\Policies\ThaiCardAgent"
BROWSER_KEYS = (
    r"Software\Policies\Google\Chrome\LocalNetworkAccessAllowedForUrls",
    r"Software\Policies\Google\Chrome\LoopbackNetworkAllowedForUrls",
    r"Software\Policies\Microsoft\Edge\LocalNetworkAccessAllowedForUrls",
    r"Software\Policies\Microsoft\Edge\LoopbackNetworkAllowedForUrls",
)
ORIGIN_SLOTS = 4
BROWSER_VALUE_NAME = "818900{n}"
# Firefox's list (Mozilla's ADMX): values 1, 2, ... of host names; read as a list only when
# the first value is named "1", so ours must be 1..4 and never overwrite a hospital's list.
FIREFOX_KEY = r"Software\Policies\Mozilla\Firefox\LocalNetworkAccess\SkipDomains"
FIREFOX_SLOTS = 4
FIREFOX_GUARD = "(NOT FIREFOX_LIST_FIRST OR FIREFOX_LIST_FIRST = FIREFOX_DOMAIN1)"
NHSO_AUTHEN_HOST = "authenservice.nhso.go.th"
REG_LOCATOR_RAW_64 = 2 | 16
PUBLIC_PROPERTIES = ("PORT", "ALLOWED_ORIGINS", "DEFAULT_TERMINAL", "BACKEND", "LOG_LEVEL",
                     "BROWSER_POLICIES", "AUTOSTART", "KIOSK",
                     *(f"ORIGIN{n}" for n in range(1, ORIGIN_SLOTS + 1)),
                     *(f"FIREFOX_DOMAIN{n}" for n in range(1, FIREFOX_SLOTS + 1)))
# Policy value name -> property it comes from (the agent reads these names, agent/config.py).
POLICY_VALUES = {"AllowedOrigins": " ".join(f"[ORIGIN{n}]" for n in range(1, ORIGIN_SLOTS + 1)),
                 "Port": "#[PORT]", "DefaultTerminal": "[DEFAULT_TERMINAL]",
                 "Backend": "[BACKEND]", "LogLevel": "[LOG_LEVEL]"}
# Uninstall is given none of the install's properties: a component's condition must also
# hold then, or the component may stay installed (Wine's msiexec leaves its values behind).
ON_UNINSTALL = ' OR REMOVE~="ALL"'
COMPONENT_64BIT = 256
COMPONENT_PERMANENT = 16
COMPONENT_NEVER_OVERWRITE = 128
DEFERRED_NO_IMPERSONATE = 1024 | 2048


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[dict[str, str]]

    def where(self, **match: str) -> list[dict[str, str]]:
        return [r for r in self.rows if all(r.get(k) == v for k, v in match.items())]


def read_table(msi: Path, name: str) -> Table:
    text = subprocess.run(["msiinfo", "export", str(msi), name], check=True,
                          capture_output=True, text=True).stdout
    lines = text.split("\r\n") if "\r\n" in text else text.splitlines()
    columns = lines[0].split("\t")
    rows = [dict(zip(columns, line.split("\t"), strict=True)) for line in lines[3:] if line]
    return Table(columns, rows)


def read_summary(msi: Path) -> dict[str, str]:
    text = subprocess.run(["msiinfo", "suminfo", str(msi)], check=True,
                          capture_output=True, text=True).stdout
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def directory_path(directories: Table, directory: str) -> list[str]:
    """Where a directory lands: the system folder it hangs from, then the names below it
    (``.`` means "the parent itself")."""
    by_id = {r["Directory"]: r for r in directories.rows}
    names: list[str] = []
    while True:
        row = by_id[directory]
        parent = row["Directory_Parent"]
        name = row["DefaultDir"].split(":")[0].split("|")[-1]
        if parent in ("", "TARGETDIR"):
            return [directory, *reversed(names)]
        if name != ".":
            names.append(name)
        directory = parent


def condition_at_install(condition: str) -> str:
    """A component condition without its uninstall clause: ``(X) OR REMOVE~="ALL"`` -> X."""
    if condition.startswith("(") and condition.endswith(")" + ON_UNINSTALL):
        return condition[1:-len(")" + ON_UNINSTALL)]
    return condition


def check_msi(msi: Path, version: str | None = None) -> list[str]:
    problems: list[str] = []

    def need(ok: bool, message: str) -> None:
        if not ok:
            problems.append(message)

    tables = {name: read_table(msi, name) for name in (
        "Property", "Component", "Registry", "Shortcut", "Upgrade", "File", "Directory",
        "CustomAction", "InstallExecuteSequence", "LaunchCondition", "FeatureComponents",
        "AppSearch", "RegLocator")}
    props = {r["Property"]: r["Value"] for r in tables["Property"].rows}
    summary = read_summary(msi)

    # Per machine, 64-bit.
    template = summary.get("Template", "")
    need(template.startswith("x64;"), f"not an x64 package: {template!r}")
    need(props.get("ALLUSERS") == "1", "not per-machine (ALLUSERS != 1)")
    need(props.get("ProductName") == "Thai Card Agent", f"ProductName {props.get('ProductName')!r}")
    if version is not None:
        need(props.get("ProductVersion") == version,
             f"ProductVersion {props.get('ProductVersion')!r}, expected {version!r}")
    components = {r["Component"]: r for r in tables["Component"].rows}
    for name, row in components.items():
        attrs = int(row["Attributes"] or 0)
        need(bool(attrs & COMPONENT_64BIT), f"component {name} is not 64-bit")
        need(not attrs & COMPONENT_PERMANENT, f"component {name} is permanent (left on uninstall)")
        need(not attrs & COMPONENT_NEVER_OVERWRITE, f"component {name} is never-overwrite")
    in_feature = {r["Component_"] for r in tables["FeatureComponents"].rows}
    need(set(components) <= in_feature,
         f"components in no feature: {sorted(set(components) - in_feature)}")

    # Files in Program Files\Thai Card Agent.
    files = {r["FileName"].split("|")[-1]: r for r in tables["File"].rows}
    for exe in ("thaicard-agent.exe", "thaicard-agent-tray.exe"):
        row = files.get(exe)
        need(row is not None, f"{exe} is not in the File table")
        if row is not None:
            directory = components[row["Component_"]]["Directory_"]
            path = directory_path(tables["Directory"], directory)
            need(path == ["ProgramFiles64Folder", "Thai Card Agent"], f"{exe} installs to {path}")
    install_dir = tables["Directory"].where(Directory="INSTALLDIR")
    need(bool(install_dir) and install_dir[0]["Directory_Parent"] == "ProgramFiles64Folder"
         and install_dir[0]["DefaultDir"].split("|")[-1] == "Thai Card Agent",
         "INSTALLDIR is not ProgramFiles64Folder\\Thai Card Agent")

    # Start-menu shortcut to the tray.
    shortcuts = tables["Shortcut"].where(Directory_="ProgramMenuFolder")
    need(len(shortcuts) == 1, f"expected one Start-menu shortcut, found {len(shortcuts)}")
    for s in shortcuts:
        need(s["Target"] == "[INSTALLDIR]thaicard-agent-tray.exe" and s["Arguments"] == "tray",
             f"shortcut runs {s['Target']} {s['Arguments']}")
        need(s["Name"].split("|")[-1] == "Thai Card Agent", f"shortcut named {s['Name']!r}")

    registry = tables["Registry"]

    def reg(key: str, name: str) -> dict[str, str] | None:
        rows = registry.where(Root=HKLM, Key=key, Name=name)
        return rows[0] if len(rows) == 1 else None

    def install_condition(component: str) -> str:
        return condition_at_install(components[component]["Condition"])

    # Whatever was written is removed on uninstall, whichever properties the install had.
    for name in sorted({r["Component_"] for r in registry.rows}):
        condition = components[name]["Condition"]
        need(not condition or condition.endswith(ON_UNINSTALL),
             f"component {name} is conditioned ({condition!r}) but not on uninstall: its "
             f"values may stay; end the condition with{ON_UNINSTALL}")

    # Auto-start in every user's session.
    run = reg(RUN_KEY, "ThaiCardAgent")
    need(run is not None, "no HKLM Run value ThaiCardAgent")
    if run is not None:
        need(run["Value"] == '"[INSTALLDIR]thaicard-agent-tray.exe" tray',
             f"Run value is {run['Value']!r}")
        need(install_condition(run["Component_"]) == 'AUTOSTART = "1"',
             "Run value not conditioned on AUTOSTART")
    need(props.get("AUTOSTART") == "1", "AUTOSTART does not default to 1")

    # The kiosk (KIOSK=1 only): the kiosk page at every logon.
    kiosk = reg(RUN_KEY, "ThaiCardAgentKiosk")
    need(kiosk is not None, "no HKLM Run value ThaiCardAgentKiosk")
    if kiosk is not None:
        need(kiosk["Value"] == '"[INSTALLDIR]thaicard-agent-tray.exe" kiosk',
             f"kiosk Run value is {kiosk['Value']!r}")
        need(components[kiosk["Component_"]]["Condition"] == '(KIOSK = "1") OR REMOVE~="ALL"',
             "kiosk Run value not conditioned on KIOSK")
    need(props.get("KIOSK") in (None, ""), "KIOSK is on by default")

    # Agent policy: exactly the names the agent knows, from the public properties.
    policy_rows = registry.where(Root=HKLM, Key=POLICY_KEY)
    names = sorted(r["Name"] for r in policy_rows)
    need(names == sorted(POLICY_VALUES), f"policy values {names}, expected {sorted(POLICY_VALUES)}")
    for row in policy_rows:
        expected = POLICY_VALUES.get(row["Name"])
        need(row["Value"] == expected,
             f"policy {row['Name']} = {row['Value']!r}, expected {expected!r}")
        prop = re.search(r"\[([A-Z_]+)\]", row["Value"])
        condition = install_condition(row["Component_"])
        if row["Name"] == "AllowedOrigins":
            need(condition == "", "AllowedOrigins must always be written")
        elif prop:
            need(condition == prop.group(1), f"policy {row['Name']} written even when "
                 f"{prop.group(1)} is empty (condition {condition!r})")
    need(props.get("ORIGIN1") == NHSO_AUTHEN_ORIGIN,
         f"ORIGIN1 defaults to {props.get('ORIGIN1')!r}")

    # Browser policies for every origin slot, in Chrome and Edge, with the opt-out.
    need(props.get("BROWSER_POLICIES") == "1", "BROWSER_POLICIES does not default to 1")
    for n in range(1, ORIGIN_SLOTS + 1):
        for key in BROWSER_KEYS:
            row = reg(key, BROWSER_VALUE_NAME.format(n=n))
            need(row is not None, f"no {key}\\{BROWSER_VALUE_NAME.format(n=n)}")
            if row is None:
                continue
            need(row["Value"] == f"[ORIGIN{n}]", f"{key} slot {n} = {row['Value']!r}")
            need(install_condition(row["Component_"]) ==
                 f'BROWSER_POLICIES = "1" AND ORIGIN{n}',
                 f"{key} slot {n}: condition {components[row['Component_']]['Condition']!r}")

    # Public properties reach the elevated install.
    secure = set(props.get("SecureCustomProperties", "").split(";"))
    need(set(PUBLIC_PROPERTIES) <= secure,
         f"not Secure: {sorted(set(PUBLIC_PROPERTIES) - secure)}")
    conditions = " ".join(r["Condition"] for r in tables["LaunchCondition"].rows)
    for prop in ("PORT", "BACKEND", "LOG_LEVEL", "ALLOWED_ORIGINS", "ORIGIN1",
                 *(f"FIREFOX_DOMAIN{n}" for n in range(1, FIREFOX_SLOTS + 1))):
        need(f"NOT {prop} OR" in conditions, f"{prop} is not validated by a launch condition")

    # MajorUpgrade: same UpgradeCode, older versions removed, downgrades refused.
    upgrades = tables["Upgrade"].where(UpgradeCode=UPGRADE_CODE)
    need({r["ActionProperty"] for r in upgrades}
         == {"WIX_UPGRADE_DETECTED", "WIX_DOWNGRADE_DETECTED"}, f"Upgrade rows: {upgrades}")
    need(props.get("UpgradeCode", "").upper() == UPGRADE_CODE,
         f"UpgradeCode {props.get('UpgradeCode')}")
    sequence = {r["Action"]: r for r in tables["InstallExecuteSequence"].rows}
    need("RemoveExistingProducts" in sequence, "RemoveExistingProducts is not scheduled")

    # Firefox: host names 1..4 under the opt-out, only where no hospital list is in the way,
    # removed on uninstall with their components (none is permanent: checked above).
    for n in range(1, FIREFOX_SLOTS + 1):
        row = reg(FIREFOX_KEY, str(n))
        need(row is not None, f"no {FIREFOX_KEY}\\{n}")
        if row is None:
            continue
        need(row["Value"] == f"[FIREFOX_DOMAIN{n}]", f"Firefox slot {n} = {row['Value']!r}")
        need(components[row["Component_"]]["Condition"] ==
             f'(BROWSER_POLICIES = "1" AND FIREFOX_DOMAIN{n} AND {FIREFOX_GUARD})'
             ' OR REMOVE~="ALL"',
             f"Firefox slot {n}: condition {components[row['Component_']]['Condition']!r}")
    firefox_names = sorted(r["Name"] for r in registry.where(Root=HKLM, Key=FIREFOX_KEY))
    need(firefox_names == [str(n) for n in range(1, FIREFOX_SLOTS + 1)],
         f"Firefox list values {firefox_names}")
    search = tables["AppSearch"].where(Property="FIREFOX_LIST_FIRST")
    locator = (tables["RegLocator"].where(Signature_=search[0]["Signature_"])
               if len(search) == 1 else [])
    need(len(locator) == 1 and locator[0]["Root"] == HKLM and locator[0]["Key"] == FIREFOX_KEY
         and locator[0]["Name"] == "1" and int(locator[0]["Type"]) == REG_LOCATOR_RAW_64,
         "FIREFOX_LIST_FIRST does not read the existing list's value 1 (64-bit, raw)")
    default = tables["CustomAction"].where(Action="FirefoxDomainForNhso")
    need(len(default) == 1 and default[0]["Source"] == "FIREFOX_DOMAIN1"
         and default[0]["Target"] == NHSO_AUTHEN_HOST,
         "FIREFOX_DOMAIN1 is not defaulted to the NHSO page's host")
    if "FirefoxDomainForNhso" in sequence and "CostInitialize" in sequence:
        # Component conditions are evaluated at CostFinalize: the default must be set before.
        need(int(sequence["FirefoxDomainForNhso"]["Sequence"])
             < int(sequence["CostInitialize"]["Sequence"]),
             "FirefoxDomainForNhso runs after the component conditions are evaluated")
        need(NHSO_AUTHEN_ORIGIN in sequence["FirefoxDomainForNhso"]["Condition"]
             and "NOT FIREFOX_DOMAIN1" in sequence["FirefoxDomainForNhso"]["Condition"],
             "FirefoxDomainForNhso overrides a given FIREFOX_DOMAIN1 or ignores ORIGIN1")
    else:
        need(False, "FirefoxDomainForNhso is not scheduled")

    # A running tray must not block uninstall/upgrade.
    stop = tables["CustomAction"].where(Action="StopRunningAgent")
    need(len(stop) == 1
         and int(stop[0]["Type"]) & DEFERRED_NO_IMPERSONATE == DEFERRED_NO_IMPERSONATE
         and "thaicard-agent-tray.exe" in stop[0]["Target"],
         "StopRunningAgent is missing or not deferred as SYSTEM")
    if "StopRunningAgent" in sequence and "RemoveFiles" in sequence:
        need(int(sequence["StopRunningAgent"]["Sequence"])
             < int(sequence["RemoveFiles"]["Sequence"]), "StopRunningAgent runs after RemoveFiles")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a thaicard-agent MSI's tables.")
    parser.add_argument("msi", type=Path)
    parser.add_argument("--version", help="expected ProductVersion")
    args = parser.parse_args(argv)
    problems = check_msi(args.msi, args.version)
    for problem in problems:
        print(f"MSI problem: {problem}", file=sys.stderr)
    if not problems:
        print(f"{args.msi}: all checks passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
