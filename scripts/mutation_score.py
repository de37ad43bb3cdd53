"""The mutation score per module, from a finished ``mutmut run`` (called by mutation.sh).

score = killed / (mutants - equivalent ones). A mutant counts as equivalent when it is
listed by name in docs/mutation-equivalents.md, or when it falls under one of the two rules
this script checks by itself (docs/mutation-equivalents.md says why):

- sql-case: a SQL statement whose only change is the case of its keywords or names
  (SQLite ignores that case), with its quoted values unchanged;
- log-line: the only change is inside a ``log.<level>(...)`` statement (the wording of a
  log line; what logs must never contain is tested by tests/test_privacy_logging.py).

Everything else that lived ("survived", or "no tests": nothing fast covers it) lowers the
score and is written to survivors.txt for `mutmut show`.

usage: mutation_score.py WORK_DIR ELAPSED_SECONDS EQUIVALENTS_MD
"""

from __future__ import annotations

import ast
import copy
import re
import sys
from collections import defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "suspicious", "caught by type check"}
SQL = re.compile(r"^\s*(SELECT|UPDATE|INSERT|DELETE|BEGIN|COMMIT|ROLLBACK|PRAGMA|CREATE|"
                 r"ORDER|AND|WHERE|SET|VALUES|FROM)\b", re.IGNORECASE)


def listed_equivalents(path: Path) -> set[str]:
    if not path.exists():
        return set()
    # Only the lists of equivalents: the survivors named after them are still alive.
    text = path.read_text(encoding="utf-8").split("\n## Survivors not killed yet")[0]
    return set(re.findall(r"`([\w.ǁ]+__mutmut_\d+)`", text))


class Sources:
    """The mutated modules (every mutant is a function next to its original)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.functions: dict[str, dict[str, ast.FunctionDef | ast.AsyncFunctionDef]] = {}

    def function(self, module: str, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
        if module not in self.functions:
            path = self.work / "mutants" / (module.replace(".", "/") + ".py")
            found: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = {}
            if path.exists():
                for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        found[node.name] = node
            self.functions[module] = found
        return self.functions[module].get(name)


def _strings(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)]


def _shape(node: ast.AST) -> str:
    node = copy.deepcopy(node)
    node.name = "f"
    for n in ast.walk(node):
        if isinstance(n, ast.Constant) and isinstance(n.value, str):
            n.value = ""
    return ast.dump(node)


def sql_case_only(sources: Sources, module: str, mutant: str) -> bool:
    name = mutant[len(module) + 1:]
    original = re.sub(r"__mutmut_\d+$", "__mutmut_orig", name)
    a, b = sources.function(module, original), sources.function(module, name)
    if a is None or b is None or _shape(a) != _shape(b):
        return False
    changed = [(x, y) for x, y in zip(_strings(a), _strings(b), strict=True) if x != y]
    if len(changed) != 1:
        return False
    x, y = changed[0]
    return (x.lower() == y.lower() and bool(SQL.match(x))
            and re.findall(r"'[^']*'", x) == re.findall(r"'[^']*'", y))


LOG_LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


def _changed_statement(a: ast.AST, b: ast.AST) -> ast.AST | None:
    """The innermost statement of ``a`` that differs from its twin in ``b``."""
    found: ast.AST | None = a if isinstance(a, ast.stmt) else None
    while True:
        ca, cb = list(ast.iter_child_nodes(a)), list(ast.iter_child_nodes(b))
        if len(ca) != len(cb):
            return found
        diff = [(x, y) for x, y in zip(ca, cb, strict=False) if ast.dump(x) != ast.dump(y)]
        if len(diff) != 1:
            return found
        a, b = diff[0]
        if isinstance(a, ast.stmt):
            found = a


def log_line_only(sources: Sources, module: str, mutant: str) -> bool:
    name = mutant[len(module) + 1:]
    original = re.sub(r"__mutmut_\d+$", "__mutmut_orig", name)
    a, b = sources.function(module, original), sources.function(module, name)
    if a is None or b is None:
        return False
    a, b = copy.deepcopy(a), copy.deepcopy(b)
    b.name = a.name
    stmt = _changed_statement(a, b)
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and isinstance(stmt.value.func.value, ast.Name)
            and stmt.value.func.value.id in ("log", "logger")
            and stmt.value.func.attr in LOG_LEVELS)


def main() -> None:
    work, elapsed, equivalents_md = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    listed = listed_equivalents(equivalents_md)
    sources = Sources(work)
    stats: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    survivors: list[str] = []
    auto: list[str] = []
    for line in (work / "results.txt").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if "__mutmut_" not in line or ": " not in line:
            continue
        name, status = line.rsplit(": ", 1)
        # agent.nhso.outbox.xǁOutboxǁ_purge__mutmut_3, agent.core.x_helper__mutmut_1
        module = re.split(r"\.x[ǁ_]", name, maxsplit=1)[0]
        s = stats[module]
        s["total"] += 1
        if status == "not checked":          # an interrupted run: reported, not scored
            s["unrun"] += 1
        elif status in KILLED:
            s["killed"] += 1
        elif name in listed:
            s["equivalent"] += 1
        elif sql_case_only(sources, module, name):
            s["equivalent"] += 1
            auto.append(f"{name} sql-case")
        elif log_line_only(sources, module, name):
            s["equivalent"] += 1
            auto.append(f"{name} log-line")
        else:
            s["alive"] += 1
            survivors.append(f"{name} ({status})")
    print(f"{'module':28} {'mutants':>8} {'killed':>7} {'equiv':>6} {'alive':>6} {'unrun':>6} "
          f"{'score':>7}")
    total: dict[str, int] = defaultdict(int)
    for module in sorted(stats):
        s = stats[module]
        for key, value in s.items():
            total[key] += value
        scored = s["killed"] + s["alive"]
        score = 100.0 * s["killed"] / scored if scored else 100.0
        print(f"{module:28} {s['total']:8} {s['killed']:7} {s['equivalent']:6} "
              f"{s['alive']:6} {s['unrun']:6} {score:6.1f}%")
    scored = total["killed"] + total["alive"]
    if scored:
        print(f"{'all':28} {total['total']:8} {total['killed']:7} {total['equivalent']:6} "
              f"{total['alive']:6} {total['unrun']:6} {100.0 * total['killed'] / scored:6.1f}%")
    rules = {r: sum(a.endswith(r) for a in auto) for r in ("sql-case", "log-line")}
    print(f"equivalent by rule: {rules}; run took {elapsed // 60} min {elapsed % 60} s")
    (work / "survivors.txt").write_text("".join(f"{s}\n" for s in survivors), encoding="utf-8")
    (work / "equivalent-by-rule.txt").write_text("".join(f"{s}\n" for s in auto),
                                                  encoding="utf-8")


if __name__ == "__main__":
    main()
