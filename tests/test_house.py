"""The structure of the house, checked on the source: rooms, doors and habits.

docs/architecture.md describes the rooms; these tests keep the description true. They read
the code with ``ast`` (nothing is imported), so a wrong import fails here with the file and
line, long before it shows up as a cycle at run time.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "tray")


@dataclass(frozen=True)
class Import:
    source: str        # the importing module, e.g. agent.api.v1
    target: str        # the imported module, e.g. agent.core
    line: int
    lazy: bool         # inside a function (still an edge: it runs sooner or later)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files(*packages: str) -> list[Path]:
    return sorted(p for pkg in packages for p in (ROOT / pkg).rglob("*.py"))


MODULES = {module_name(p): p for p in source_files(*PACKAGES)}


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> Iterator[Import]:
    module = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    lazy_lines = {n.lineno for f in ast.walk(tree)
                  if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                  for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno, node.lineno in lazy_lines)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                # ``from . import x`` names a submodule when one exists.
                sub = f"{target}.{alias.name}"
                yield Import(module, sub if sub in MODULES else target, node.lineno,
                             node.lineno in lazy_lines)


ALL_IMPORTS = [imp for p in MODULES.values() for imp in imports_of(p)]


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _in(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in ALL_IMPORTS:
        if imp.target in MODULES and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert cycles == [], f"import cycles: {cycles}"


def test_agent_never_imports_tray() -> None:
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in ALL_IMPORTS
           if _in(i.source, "agent") and _in(i.target, "tray")]
    assert bad == []


def test_only_the_pcsc_module_imports_pyscard() -> None:
    bad = [f"{i.source}:{i.line}" for i in ALL_IMPORTS
           if _in(i.target, "smartcard") and i.source != "agent.readers.pcsc"]
    assert bad == []


def test_the_core_is_the_only_door_to_the_readers() -> None:
    """Above the readers, only the core (and the monitor thread it owns) imports them."""
    doors = ("agent.core", "agent.monitor")
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in ALL_IMPORTS
           if _in(i.target, "agent.readers") and not _in(i.source, "agent.readers")
           and i.source not in doors]
    assert bad == []


def _calls_and_attributes(path: Path) -> Iterator[tuple[str, int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            yield "call", node.lineno, node.func.id
        elif isinstance(node, ast.Attribute):
            yield "attr", node.lineno, node.attr
        elif isinstance(node, ast.Name):
            yield "name", node.lineno, node.id


def test_nothing_above_the_core_reads_its_internals() -> None:
    internals = {"_slots", "slots", "ReaderSlot", "_backend", "_on_reader_event"}
    bad = []
    for module, path in MODULES.items():
        if module == "agent.core" or _in(module, "agent.readers"):
            continue        # the readers keep their own private ``_slots``
        for kind, line, name in _calls_and_attributes(path):
            if kind != "call" and name in internals and not (
                    name == "_backend" and module == "agent.nhso.token"):
                bad.append(f"{module}:{line} uses {name}")
    assert bad == []


def test_one_assembly_builds_the_services() -> None:
    """The card and NHSO services are made in agent.assembly (the NHSO room also offers
    ``setup_nhso`` to mount itself alone, for its own tests and tools)."""
    allowed = {"CardService": {"agent.assembly"},
               "NhsoService": {"agent.assembly", "agent.nhso.routes"},
               "make_backend": {"agent.core"}}
    bad = []
    for module, path in MODULES.items():
        for kind, line, name in _calls_and_attributes(path):
            if kind == "call" and name in allowed and module not in allowed[name]:
                bad.append(f"{module}:{line} calls {name}")
    assert bad == []


DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
             *sorted((ROOT / "installer").glob("*.md")), *sorted((ROOT / "bench").glob("*.md"))]
MD_REF = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[\w.-]+\.md)\b")


@pytest.mark.parametrize("path", [*source_files(*PACKAGES, "tests", "bench", "installer"),
                                  *DOC_FILES], ids=lambda p: str(p.relative_to(ROOT)))
def test_references_point_into_this_repository(path: Path) -> None:
    """Comments and docs cite only files a reader of this repository can open."""
    if path == Path(__file__):
        return
    text = path.read_text(encoding="utf-8")
    for outside in ("shared/docs", "shared/seeds", "field-notes", "nhso-agent-api",
                    "thai-id-card", "pcsc-test-rig"):
        assert outside not in text, f"{path.name} cites {outside}, which is not in the " \
            "repository (docs/reference.md holds those facts)"
    missing = []
    for ref in MD_REF.findall(text):
        candidates = [ROOT / ref, path.parent / ref, ROOT / "docs" / ref]
        if not any(c.exists() for c in candidates):
            missing.append(ref)
    assert missing == [], f"{path.name} cites files that do not exist: {missing}"


# -- habits -------------------------------------------------------------------------------
LINTED = ("agent", "tray", "tests", "testrig", "bench", "installer", "scripts")


def _run_tool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_ruff_is_clean() -> None:
    """The rule set of pyproject.toml over every Python file of the repository."""
    result = _run_tool("ruff", "check", "--no-cache", *LINTED)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_mypy_is_clean() -> None:
    """agent/ and tray/ type-check (strict on the card protocol, core, events, errors and
    assembly: see pyproject.toml)."""
    result = _run_tool("mypy", "--no-incremental")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


SUPPRESSION = re.compile(r"#\s*(noqa|type:\s*ignore)\b(?P<rest>.*)$")


@pytest.mark.parametrize("path", source_files(*LINTED), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_suppression_says_why(path: Path) -> None:
    """A ``noqa`` or ``type: ignore`` names its codes and carries a reason beside it."""
    if path == Path(__file__):
        return                   # this test's own patterns and examples
    bad = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        match = SUPPRESSION.search(line)
        if match is None:
            continue
        rest = match.group("rest")
        # accepted: "noqa" + ": CODE[,CODE] - reason", or "type: ignore[code]  # reason"
        named = re.match(r"^(:\s*[A-Z]+[0-9]+(,\s*[A-Z]+[0-9]+)*|\[[a-z-]+(,\s*[a-z-]+)*\])",
                         rest)
        reason = rest[named.end():].strip(" -#—") if named else ""
        if not named or len(reason) < 3:
            bad.append(f"{number}: {line.strip()}")
    assert bad == []


def test_benches_import_the_rigs_without_editing_sys_path() -> None:
    """The rigs are the package ``testrig`` (installed with the agent's test extra)."""
    bad = [str(p.relative_to(ROOT)) for p in source_files("bench", "testrig")
           if "sys.path.insert" in p.read_text(encoding="utf-8")]
    assert bad == []


def test_the_rigs_do_not_depend_on_the_tests() -> None:
    bad = [f"{p.name}: {line.strip()}" for p in source_files("testrig")
           for line in p.read_text(encoding="utf-8").splitlines()
           if re.match(r"\s*(from tests\b|import tests\b)", line)]
    assert bad == []
