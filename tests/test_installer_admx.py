"""The Group Policy templates: well-formed, current, and exactly the agent's policy values.

The expected names are derived here from the settings engine's key tables (the agent's,
the NHSO settings' and the LAN listener's), not listed by hand: every value the agent reads
from ``HKLM\\Software\\Policies\\ThaiCardAgent`` has a policy, and every policy names a value
exactly one of the tables claims.
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agent.config import TABLE as AGENT_TABLE
from agent.lan.settings import TABLE as LAN_TABLE
from agent.nhso.settings import TABLE as NHSO_TABLE
from agent.osroom.windows import POLICY_KEY

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "installer" / "windows" / "policy"
ADMX = POLICY_DIR / "ThaiCardAgent.admx"
ADMLS = {lang: POLICY_DIR / lang / "ThaiCardAgent.adml" for lang in ("en-US", "th-TH")}
NS = {"p": "http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions"}
TABLES = (AGENT_TABLE, NHSO_TABLE, LAN_TABLE)
SAMPLES = {"boolean": 1, "decimal": 30, "text": "x", "multiText": None, "enum": None}


def expected_names() -> set[str]:
    names = set()
    for table in TABLES:
        for key in table.keys:
            if key.policy:
                names.add((table.policy_prefix + key.json).casefold())
    return names


def admx_values() -> dict[str, tuple[str, ET.Element]]:
    """Registry value name -> (element kind, the policy element)."""
    root = ET.parse(ADMX).getroot()
    found = {}
    for policy in root.iterfind(".//p:policy", NS):
        assert policy.get("key") == POLICY_KEY
        assert policy.get("class") == "Machine"
        if policy.get("valueName"):
            found[policy.get("valueName")] = ("boolean", policy)
        for element in policy.iterfind("p:elements/*", NS):
            kind = element.tag.split("}")[1]
            assert element.get("valueName") not in found, "one value, one policy"
            found[element.get("valueName")] = (kind, policy)
    return found


def test_files_are_current() -> None:
    """make_admx.py writes what is committed: a new setting regenerates the templates."""
    proc = subprocess.run([sys.executable, "installer/windows/make_admx.py", "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("path", [ADMX, *ADMLS.values()], ids=lambda p: p.parent.name)
def test_well_formed_xml(path: Path) -> None:
    root = ET.parse(path).getroot()
    assert root.tag.endswith(("policyDefinitions", "policyDefinitionResources"))


def test_every_value_the_agent_reads_has_a_policy_and_no_other() -> None:
    values = admx_values()
    assert {name.casefold() for name in values} == expected_names()


def test_every_policy_value_is_claimed_by_exactly_one_key_table() -> None:
    for name, (kind, policy) in admx_values().items():
        if kind == "enum":
            sample = policy.find(".//p:item/p:value/p:string", NS).text
        elif kind == "multiText":
            sample = (["https://his.example.go.th"] if "origin" in name.lower()
                      else ["10.0.5.20"])
        else:
            sample = SAMPLES[kind]
        # Text values that must parse as what they name (a valid one of each).
        sample = {"OriginScopes": "https://his.example.go.th=card,photo",
                  "DefaultScopes": "card,photo"}.get(name, sample)
        claimed = []
        for table in TABLES:
            try:
                if table.from_policy({name: sample}, "admx"):
                    claimed.append(table.policy_prefix or "agent")
            except Exception as exc:  # noqa: BLE001 - any refusal means "not this table's"
                assert "unknown policy setting" in str(exc) or table is not TABLES[0], exc
        assert len(claimed) == 1, (name, claimed)


def test_strings_and_presentations_exist_in_both_languages() -> None:
    admx_text = ADMX.read_text(encoding="utf-8")
    strings = set(re.findall(r"\$\(string\.(\w+)\)", admx_text))
    presentations = set(re.findall(r"\$\(presentation\.(\w+)\)", admx_text))
    elements = {policy.get("name"): {e.get("id") for e in policy.iterfind("p:elements/*", NS)}
                for policy in ET.parse(ADMX).getroot().iterfind(".//p:policy", NS)}
    texts = {}
    for lang, path in ADMLS.items():
        root = ET.parse(path).getroot()
        table = {s.get("id"): s.text for s in root.iterfind(".//p:stringTable/p:string", NS)}
        assert strings <= set(table), (lang, strings - set(table))
        shown = {p.get("id"): p for p in root.iterfind(".//p:presentationTable/p:presentation",
                                                       NS)}
        assert presentations == set(shown), lang
        for name, pres in shown.items():
            assert {c.get("refId") for c in pres} == elements[name], (lang, name)
        texts[lang] = table
    assert re.search("[\u0e00-\u0e7f]", texts["th-TH"]["AllowedOrigins"])
    assert texts["en-US"]["AllowedOrigins"] != texts["th-TH"]["AllowedOrigins"]


def test_the_msi_source_ships_the_templates() -> None:
    wxs = (ROOT / "installer" / "windows" / "thaicard-agent.wxs").read_text(encoding="utf-8")
    for rel in ("ThaiCardAgent.admx", "en-US/ThaiCardAgent.adml", "th-TH/ThaiCardAgent.adml"):
        assert f"$(var.PolicyDir)/{rel}" in wxs
