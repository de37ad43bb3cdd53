#!/usr/bin/env bash
# Builds thaicard-agent-<version>-macos-<arch>.pkg on macOS from the PyInstaller output.
#   installer/macos/build_pkg.sh DIST_DIR OUTPUT_DIR [--stage-only]
# DIST_DIR holds "Thai Card Agent.app" (installer/build_binary.sh on a Mac). --stage-only
# lays out the package root and the distribution file in OUTPUT_DIR/stage and stops before
# the macOS-only tools (used by the Linux CI to check this script).
#
# Signing and notarisation run when their variables are set (the release workflow sets them
# from secrets):
#   MACOS_CODESIGN_IDENTITY   "Developer ID Application: <name> (<team id>)"
#   MACOS_INSTALLER_IDENTITY  "Developer ID Installer: <name> (<team id>)"
#   APPLE_ID, APPLE_TEAM_ID, APPLE_APP_PASSWORD   notarytool credentials (app-specific password)
# A kiosk PC's package (docs/kiosk.md):
#   KIOSK=1                   also opens the kiosk page full screen at every login
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
dist="${1:?usage: build_pkg.sh DIST_DIR OUTPUT_DIR [--stage-only]}"
out="${2:?usage: build_pkg.sh DIST_DIR OUTPUT_DIR [--stage-only]}"
stage_only="${3:-}"

app_name="Thai Card Agent.app"
app="$dist/$app_name"
[ -d "$app" ] || { echo "$app not found: run installer/build_binary.sh on macOS" >&2; exit 1; }
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/agent/__init__.py")"
arch="${PKG_ARCH:-$(uname -m)}"
case "$arch" in
  arm64|x86_64) ;;
  aarch64) arch=arm64 ;;
  *) echo "unsupported architecture: $arch" >&2; exit 1 ;;
esac
case "${KIOSK:-0}" in
  0|1) ;;
  *) echo "KIOSK: '$KIOSK' must be 1 (a kiosk PC) or 0" >&2; exit 1 ;;
esac

stage="$out/stage"
rm -rf "$stage"
mkdir -p "$stage/root/Applications" "$stage/root/Library/LaunchAgents" "$stage/packages"
# ditto keeps the bundle's symlinks, permissions and extended attributes (signatures).
if command -v ditto >/dev/null 2>&1; then
  ditto "$app" "$stage/root/Applications/$app_name"
else
  cp -a "$app" "$stage/root/Applications/$app_name"
fi
install -m 0644 "$here/th.thaicard.agent.tray.plist" "$stage/root/Library/LaunchAgents/"
if [ "${KIOSK:-0}" = 1 ]; then
  install -m 0644 "$here/th.thaicard.agent.kiosk.plist" "$stage/root/Library/LaunchAgents/"
fi
sed -e "s/@VERSION@/$version/g" -e "s/@ARCH@/$arch/g" "$here/distribution.xml" > "$stage/distribution.xml"

if [ "$stage_only" = "--stage-only" ]; then
  echo "$stage"
  exit 0
fi

staged_app="$stage/root/Applications/$app_name"
if [ -n "${MACOS_CODESIGN_IDENTITY:-}" ]; then
  # Hardened runtime and a secure timestamp: both required for notarisation.
  codesign --force --deep --options runtime --timestamp \
    --sign "$MACOS_CODESIGN_IDENTITY" "$staged_app"
  codesign --verify --deep --strict --verbose=2 "$staged_app"
fi

# A relocatable bundle would be "upgraded" wherever a copy of the app was found instead of
# /Applications, which the LaunchAgent points to.
pkgbuild --analyze --root "$stage/root" "$stage/component.plist"
plutil -replace 0.BundleIsRelocatable -bool NO "$stage/component.plist"
pkgbuild --root "$stage/root" --component-plist "$stage/component.plist" \
  --identifier th.thaicard.agent --version "$version" \
  --scripts "$here/scripts" --install-location / \
  "$stage/packages/thaicard-agent-component.pkg"

mkdir -p "$out"
pkg="$out/thaicard-agent-$version-macos-$arch.pkg"
sign_args=()
if [ -n "${MACOS_INSTALLER_IDENTITY:-}" ]; then
  sign_args=(--sign "$MACOS_INSTALLER_IDENTITY" --timestamp)
fi
productbuild --distribution "$stage/distribution.xml" --package-path "$stage/packages" \
  ${sign_args[@]+"${sign_args[@]}"} "$pkg"   # empty-array safe on macOS's bash 3.2

if [ -n "${APPLE_ID:-}" ] && [ -n "${APPLE_TEAM_ID:-}" ] && [ -n "${APPLE_APP_PASSWORD:-}" ]; then
  xcrun notarytool submit "$pkg" --apple-id "$APPLE_ID" --team-id "$APPLE_TEAM_ID" \
    --password "$APPLE_APP_PASSWORD" --wait
  xcrun stapler staple "$pkg"
  xcrun stapler validate "$pkg"
fi
echo "$pkg"
