#!/usr/bin/env bash
# Builds the one-folder agent + tray with PyInstaller for the OS it runs on.
#   installer/build_binary.sh [DIST_DIR] [WORK_DIR]
# Output: DIST_DIR/thaicard-agent/{thaicard-agent,thaicard-agent-tray}[.exe] and, on macOS,
# DIST_DIR/Thai Card Agent.app. Defaults: dist/ and build/pyinstaller/ in the checkout.
# Python: $PYTHON, else the checkout's .venv, else python3 (needs `pip install .[test]`
# or at least the agent plus pyinstaller).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="${1:-$root/dist}"
work="${2:-$root/build/pyinstaller}"

python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in "$root/.venv/bin/python" "$root/.venv/Scripts/python.exe" python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi

# Without this, PyInstaller's probe of pystray dies on a display-less build machine and the
# tray backends are silently left out (see the spec).
export PYSTRAY_BACKEND=dummy
export THAICARD_ICON_DIR="$work/icons"
mkdir -p "$work"
# Git Bash on Windows: Python there needs C:\... paths in environment variables.
if command -v cygpath >/dev/null 2>&1; then
  THAICARD_ICON_DIR="$(cygpath -w "$THAICARD_ICON_DIR")"
fi
"$python" "$root/installer/make_icons.py" "$THAICARD_ICON_DIR" >/dev/null
"$python" -m PyInstaller --noconfirm --log-level WARN \
  --distpath "$dist" --workpath "$work" "$root/installer/thaicard-agent.spec"

exe="$dist/thaicard-agent/thaicard-agent"
[ -e "$exe.exe" ] && exe="$exe.exe"
echo "Built: $("$exe" --version) in $dist/thaicard-agent"
