#!/usr/bin/env bash
# Runs every benchmark from a clean checkout (see bench/README.md):
#   scripts/bench.sh            all benches, full sizes (about 4 minutes on 2 cores)
#   BENCH_QUICK=1 scripts/bench.sh   small sample sizes, to check that everything runs
# Sets up the test profile (pcscd, vpcd, the venv), puts the peer reader pythaiidcard in
# its own venv (.venv-peer), then runs each bench. Tables go to the terminal and to
# test-output/bench/bench.log; figures to test-output/bench/*.json.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test

# The peer reader pythaiidcard is measured on the same interpreter as the agent, from the
# .venv-peer that `scripts/setup.sh test` installs.

out=test-output/bench
mkdir -p "$out"
: > "$out/bench.log"
run() {
  echo "=== $*" | tee -a "$out/bench.log"
  .venv/bin/python "$@" 2>&1 | tee -a "$out/bench.log"
}

if [ -n "${BENCH_QUICK:-}" ]; then
  run bench/bench_card_read.py --reads 5 --slow-reads 2 --insertions 3 --idle 1
  run bench/bench_events.py --insertions 4
  run bench/bench_serving.py --requests 200 --ws-clients 50 --rounds 2
  run bench/bench_footprint.py --idle 5 --reads 100 --starts 2
  run bench/bench_nhso_outbox.py --claims 50
  run bench/bench_late_recording.py --claims 20
else
  run bench/bench_late_recording.py --claims 60
  run bench/bench_card_read.py
  run bench/bench_events.py
  run bench/bench_serving.py
  run bench/bench_footprint.py
  run bench/bench_nhso_outbox.py
fi
# bench_serving and bench_nhso_outbox write next to the test output; keep one folder.
for f in bench_serving.json bench_nhso_outbox.json; do
  [ -f "test-output/$f" ] && cp "test-output/$f" "$out/$f"
done
echo "Figures: $out/*.json; tables: $out/bench.log"
