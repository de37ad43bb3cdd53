#!/usr/bin/env bash
# Runs the test suite (or the pytest arguments given) RUNS times in a row (default 5) while
# stress-ng keeps every core busy, and reports pass/fail per run. A test that only passes
# on an idle machine waits on time instead of on an event: this is how to find it.
# Not part of CI (slow). Examples:
#   scripts/stress-tests.sh                                   # the whole suite, 5 times
#   RUNS=3 scripts/stress-tests.sh tests/test_api_v1.py -k removal
#   STRESS_LOAD=100 STRESS_CPUS=4 scripts/stress-tests.sh tests/test_tray_xvfb.py
# Logs: test-output/stress/run-N.log. Exit status: 0 only if every run passed.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-5}
cpus=${STRESS_CPUS:-$(nproc)}        # one CPU hog per core
load=${STRESS_LOAD:-90}              # percent of each core it takes
limit=${STRESS_LIMIT:-7200}          # seconds: stress-ng stops by itself even if we die

[ -x .venv/bin/python ] || scripts/setup.sh test
if ! command -v stress-ng >/dev/null; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing stress-ng (Debian package)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends stress-ng >/dev/null
fi

out=test-output/stress
mkdir -p "$out"
stress-ng --cpu "$cpus" --cpu-load "$load" --timeout "${limit}s" --quiet &
stress_pid=$!
test_pid=""
stop_stress() {
  # A stopped run must not leave its pytest (and the pcscd it owns) behind either.
  if [ -n "$test_pid" ]; then kill "$test_pid" 2>/dev/null || true; fi
  kill "$stress_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_stress EXIT
trap 'exit 130' INT TERM

echo "Background load: stress-ng --cpu $cpus --cpu-load $load (pid $stress_pid, at most ${limit}s)"
failed=0
results=()
for i in $(seq 1 "$runs"); do
  log="$out/run-$i.log"
  start=$(date +%s)
  # In the background, so that INT/TERM reach the trap at once and not after the run.
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@" >"$log" 2>&1 &
  test_pid=$!
  if wait "$test_pid"; then
    verdict=PASS
  else
    verdict=FAIL
    failed=$((failed + 1))
  fi
  summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$log" | tail -1 | tr -d '=' | xargs || true)
  line="run $i/$runs: $verdict in $(( $(date +%s) - start )) s ($summary)"
  results+=("$line")
  echo "$line"
  if [ "$verdict" = FAIL ]; then
    grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' || true
  fi
done

echo
echo "Under load ($cpus x ${load}% CPU): $((runs - failed)) of $runs runs passed"
printf '%s\n' "${results[@]}" >"$out/summary.txt"
[ "$failed" -eq 0 ]
