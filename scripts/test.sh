#!/usr/bin/env bash
# Sets up everything the tests need, then runs the whole suite (the README's test command).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
mkdir -p test-output
exec .venv/bin/python -m pytest "$@"
