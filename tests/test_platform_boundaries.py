"""The per-OS rooms and the paths module stay the only places that know the OS.

Walks every module of ``agent/`` and ``tray/`` with ``ast``: a ``sys.platform``,
``platform.system()`` or ``os.name`` test outside ``agent/osroom/`` fails, and so does a
``platformdirs`` import outside ``agent/paths.py``. installer/ and tests/ may keep theirs.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OS_ROOMS = ROOT / "agent" / "osroom"
PATHS_MODULE = ROOT / "agent" / "paths.py"


def modules() -> list[Path]:
    return sorted(p for pkg in ("agent", "tray") for p in (ROOT / pkg).rglob("*.py"))


def os_checks(tree: ast.AST) -> list[str]:
    """Every place the source asks which OS it runs on."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pair = (node.value.id, node.attr)
            if pair in (("sys", "platform"), ("os", "name"), ("platform", "system"),
                        ("platform", "platform"), ("platform", "win32_ver"),
                        ("platform", "mac_ver")):
                found.append(f"{pair[0]}.{pair[1]} (line {node.lineno})")
        elif isinstance(node, ast.ImportFrom) and node.module in ("sys", "os", "platform"):
            names = {a.name for a in node.names}
            if node.module == "platform" or names & {"platform", "name"}:
                found.append(f"from {node.module} import {', '.join(sorted(names))} "
                             f"(line {node.lineno})")
        elif isinstance(node, ast.Import) and any(a.name == "platform" for a in node.names):
            found.append(f"import platform (line {node.lineno})")
    return found


def platformdirs_imports(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(name.split(".")[0] == "platformdirs" for name in names):
            lines.append(node.lineno)
    return lines


def test_the_checks_see_what_they_look_for() -> None:
    """Not vacuous: each pattern the walk rejects is found in a sample."""
    sample = ast.parse("import sys, os, platform\nimport platformdirs\n"
                       "from platformdirs import user_config_dir\n"
                       "a = sys.platform == 'win32'\nb = os.name\nc = platform.system()\n"
                       "from sys import platform as p\n")
    assert len(os_checks(sample)) == 5
    assert platformdirs_imports(sample) == [2, 3]
    assert os_checks(ast.parse("import os\nx = os.environ.get('DISPLAY')\n")) == []


def test_no_os_check_outside_the_os_rooms() -> None:
    offenders = {}
    for path in modules():
        if OS_ROOMS in path.parents:
            continue
        found = os_checks(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert offenders == {}, "ask agent.osroom.current() instead"


def test_platformdirs_only_in_the_paths_module() -> None:
    offenders = {}
    for path in modules():
        if path == PATHS_MODULE:
            continue
        lines = platformdirs_imports(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        if lines:
            offenders[str(path.relative_to(ROOT))] = lines
    assert offenders == {}, "ask agent.paths for folders"
    assert platformdirs_imports(ast.parse(PATHS_MODULE.read_text(encoding="utf-8")))
