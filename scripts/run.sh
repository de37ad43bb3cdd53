#!/usr/bin/env bash
# Sets up the agent and runs it (the README's first Quick start command). With no real
# reader attached it uses the demo reader, so it shows something on any machine.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh run
exec .venv/bin/thaicard-agent serve --backend auto "$@"
