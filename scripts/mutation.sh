#!/usr/bin/env bash
# Mutation testing (mutmut 3) of the modules whose mistakes the fast unit tests must catch:
# the card protocol, the card service, the NHSO outbox, sender and validation, and the
# NHSO-compatible JSON shapes. Prints the score per module.
#
# Not part of CI: it is slow (tens of minutes on 2 cores). Run it after changing one of
# these modules or their tests, and keep docs/mutation-equivalents.md up to date with the
# survivors that no test can kill.
#
#   scripts/mutation.sh                          # every module below
#   scripts/mutation.sh agent/nhso/outbox.py     # only these (globs as in MODULES)
#   MUTATION_JOBS=1 scripts/mutation.sh ...      # workers (default 2; the machine is shared)
#
# The run happens in a copy (build/mutation, or $MUTATION_WORK) so mutmut's "mutants"
# tree and its setup.cfg never touch the checkout. Results stay there for
# `cd build/mutation && ../../.venv/bin/mutmut show <mutant>`.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORK:-$ROOT/build/mutation}
JOBS=${MUTATION_JOBS:-2}
VENV=${MUTATION_VENV:-$ROOT/.venv}
PY=$VENV/bin/python

MODULES=(
    "agent/card/*"
    "agent/core.py"
    "agent/nhso/outbox.py"
    "agent/nhso/sender.py"
    "agent/nhso/validation.py"
    "agent/api/compat.py"
)
# The fast unit tests that exercise those modules: no PC/SC rig, no browser, no processes,
# no waiting on real retry timers. tests/test_nhso_service.py covers the sender end to end
# but waits on backoff and in-doubt delays (12 s a run): with it, a run over the NHSO
# modules takes hours on 2 shared cores, so the sender's decisions have their own
# deterministic tests (test_mutation_sender.py) instead.
TESTS=(
    tests/test_card_values.py
    tests/test_card_properties.py
    tests/test_card_read.py
    tests/test_core.py
    tests/test_api_compat.py
    tests/test_nhso_validation.py
)
for t in "$ROOT"/tests/test_privacy_outbox.py "$ROOT"/tests/test_mutation_*.py; do
    if [ -e "$t" ]; then TESTS+=("tests/${t##*/}"); fi
done

if [ "$#" -gt 0 ]; then
    MODULES=("$@")
fi

if [ ! -x "$PY" ]; then
    echo "no .venv: run scripts/setup.sh (or python3 -m venv .venv && .venv/bin/pip install -e '.[test]')" >&2
    exit 2
fi
"$PY" -m pip install -q 'mutmut>=3.8,<4'

rm -rf "$WORK"
mkdir -p "$WORK"
cp -a "$ROOT/agent" "$ROOT/tests" "$ROOT/pyproject.toml" "$WORK/"
{
    echo "[mutmut]"
    echo "source_paths = agent"
    echo "only_mutate ="
    for m in "${MODULES[@]}"; do echo "    $m"; done
    echo "pytest_add_cli_args_test_selection ="
    for t in "${TESTS[@]}"; do
        if [ -e "$ROOT/$t" ]; then echo "    $t"; fi
    done
    # -p no:randomly etc. are not installed; keep pytest quiet and fail fast per mutant.
    echo "pytest_add_cli_args ="
    echo "    -x"
    echo "    -q"
    echo "    -p"
    echo "    no:cacheprovider"
} > "$WORK/setup.cfg"

cd "$WORK"
started=$(date +%s)
# nice: the suite shares its cores with other work; mutmut's own output is a progress bar.
nice -n 10 "$VENV/bin/mutmut" run --max-children "$JOBS" > "$WORK/run.log" 2>&1 || {
    tail -40 "$WORK/run.log" >&2
    echo "mutmut run failed; full log: $WORK/run.log" >&2
    exit 1
}
elapsed=$(( $(date +%s) - started ))
"$VENV/bin/mutmut" results --all true > "$WORK/results.txt"
"$PY" - "$WORK/results.txt" "$elapsed" "$ROOT/docs/mutation-equivalents.md" <<'EOF'
"""Score per module: killed / (mutants - equivalent ones listed in the docs)."""
import re
import sys
from collections import defaultdict

results, elapsed, equivalents = sys.argv[1], int(sys.argv[2]), sys.argv[3]
listed = set()
try:
    for line in open(equivalents, encoding="utf-8"):
        listed.update(re.findall(r"`([\w.]+__mutmut_\d+)`", line))
except FileNotFoundError:
    pass
stats = defaultdict(lambda: defaultdict(int))
survivors = defaultdict(list)
for line in open(results, encoding="utf-8"):
    line = line.strip()
    if "__mutmut_" not in line or ": " not in line:
        continue
    name, status = line.rsplit(": ", 1)
    # agent.nhso.outbox.x\u01c1Outbox\u01c1_purge__mutmut_3, agent.core.x_helper__mutmut_1
    module = name.split(".x\u01c1")[0].split(".x_")[0]
    # "killed", "timeout" and "suspicious" (far slower than the clean run) all failed.
    if status in ("killed", "timeout", "suspicious", "caught by type check"):
        stats[module]["killed"] += 1
    elif name in listed:
        stats[module]["equivalent"] += 1
    else:
        stats[module]["alive"] += 1
        survivors[module].append(f"{name} ({status})")
    stats[module]["total"] += 1
print(f"{'module':32} {'mutants':>8} {'killed':>7} {'equiv':>6} {'alive':>6} {'score':>7}")
total = defaultdict(int)
for module in sorted(stats):
    s = stats[module]
    for k, v in s.items():
        total[k] += v
    scored = s["total"] - s["equivalent"]
    score = 100.0 * s["killed"] / scored if scored else 100.0
    print(f"{module:32} {s['total']:8} {s['killed']:7} {s['equivalent']:6} {s['alive']:6} "
          f"{score:6.1f}%")
scored = total["total"] - total["equivalent"]
if scored:
    print(f"{'all':32} {total['total']:8} {total['killed']:7} {total['equivalent']:6} "
          f"{total['alive']:6} {100.0 * total['killed'] / scored:6.1f}%")
print(f"run took {elapsed // 60} min {elapsed % 60} s")
with open(results.replace("results.txt", "survivors.txt"), "w", encoding="utf-8") as out:
    for module in sorted(survivors):
        for s in survivors[module]:
            out.write(s + "\n")
EOF
echo "survivors: $WORK/survivors.txt (mutmut show <name> in $WORK)"
