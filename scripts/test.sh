#!/usr/bin/env bash
# Sets up everything the tests need, then runs the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
mkdir -p test-output
# With no arguments, the whole suite as two pytest processes side by side (the PC/SC rig's
# tests and the rest: tests/lanes.py); with arguments, one pytest with them.
if [ $# -eq 0 ]; then
  exec .venv/bin/python -m tests.lanes
fi
exec .venv/bin/python -m pytest "$@"
