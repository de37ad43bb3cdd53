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
    "agent/nhso/matching.py"
    "agent/nhso/sender.py"
    "agent/nhso/validation.py"
    "agent/api/compat.py"
)
# The fast unit tests that exercise those modules: no PC/SC rig, no browser, no processes,
# no waiting on real retry timers. tests/test_nhso_service.py covers the sender end to end
# but waits on backoff and in-doubt delays (12 s a run): with it, a run over the NHSO
# modules takes hours on 2 shared cores, so the sender's decisions have their own
# deterministic tests (test_mutation_sender.py) instead.
# An entry may name single tests (file::test): test_known_card.py's decoder tests are fast,
# its other tests need the PC/SC rig.
TESTS=(
    tests/test_card_values.py
    tests/test_card_properties.py
    tests/test_card_read.py
    tests/test_card_golden.py
    tests/test_known_card.py::test_read_of_the_known_card_is_the_known_answer
    tests/test_known_card.py::test_decoders_on_the_documented_slices
    tests/test_known_card.py::test_nhso_applet_and_laser_id_decoders
    tests/test_known_card.py::test_request_number_is_the_documented_field
    tests/test_known_card.py::test_photo_read_stops_near_the_cards_own_photo_length
    tests/test_known_card.py::test_the_doc_card_follows_the_documented_framing
    tests/test_known_card.py::test_a_3b67_card_is_read_with_p2_01
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
        if [ -e "$ROOT/${t%%::*}" ]; then echo "    $t"; fi
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
"$PY" "$ROOT/scripts/mutation_score.py" "$WORK" "$elapsed" "$ROOT/docs/mutation-equivalents.md"
echo "survivors: $WORK/survivors.txt (mutmut show <name> in $WORK)"
