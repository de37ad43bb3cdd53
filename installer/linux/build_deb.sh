#!/usr/bin/env bash
# Builds thaicard-agent_<version>_<arch>.deb from the PyInstaller folder.
#   installer/linux/build_deb.sh BUNDLE_DIR OUTPUT_DIR
# BUNDLE_DIR: dist/thaicard-agent from installer/build_binary.sh (built on the oldest
# distribution the package targets: the bundle needs that glibc or newer).
# Environment:
#   ALLOWED_ORIGINS   web origins (space separated) written to the Chromium/Chrome/Edge
#                     policies and (their host names) merged into Firefox's policies.json
#                     at install; default: the NHSO authen page. When set, also written to
#                     the agent's admin policy /etc/thaicard-agent/policy.json.
#   KIOSK             1: a self-service kiosk PC: the kiosk page opens full screen in
#                     every graphical session (thaicard-agent kiosk, docs/kiosk.md)
#   DEB_VERSION       default: the agent's version
#   DEB_COMPRESSION   dpkg-deb -Z value (default xz; gzip builds faster)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bundle="${1:?usage: build_deb.sh BUNDLE_DIR OUTPUT_DIR}"
out="${2:?usage: build_deb.sh BUNDLE_DIR OUTPUT_DIR}"

[ -x "$bundle/thaicard-agent" ] || { echo "$bundle/thaicard-agent not found: run installer/build_binary.sh" >&2; exit 1; }
version="${DEB_VERSION:-$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/agent/__init__.py")}"
arch="$(dpkg --print-architecture)"
default_origin="https://authenservice.nhso.go.th"
origins="${ALLOWED_ORIGINS:-$default_origin}"
origin_re='^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$'

json_list=""
word_list=""
for origin in ${origins//,/ }; do
  if ! [[ "$origin" =~ $origin_re ]]; then
    echo "ALLOWED_ORIGINS: '$origin' is not an origin (https://host[:port])" >&2
    exit 1
  fi
  json_list+="${json_list:+, }\"$origin\""
  word_list+="${word_list:+ }$origin"
done
[ -n "$json_list" ] || { echo "ALLOWED_ORIGINS is empty" >&2; exit 1; }
case "${KIOSK:-0}" in
  0|1) ;;
  *) echo "KIOSK: '$KIOSK' must be 1 (a kiosk PC) or 0" >&2; exit 1 ;;
esac

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
pkg="$stage/pkg"
install -d "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/etc/xdg/autostart" \
  "$pkg/usr/share/applications" "$pkg/usr/share/icons/hicolor/256x256/apps" \
  "$pkg/usr/lib/systemd/user" "$pkg/usr/share/doc/thaicard-agent" \
  "$pkg/etc/chromium/policies/managed" "$pkg/etc/opt/chrome/policies/managed" \
  "$pkg/etc/opt/edge/policies/managed"

cp -a "$bundle" "$pkg/opt/thaicard-agent"
ln -s /opt/thaicard-agent/thaicard-agent "$pkg/usr/bin/thaicard-agent"
install -m 0644 "$here/thaicard-agent-autostart.desktop" "$pkg/etc/xdg/autostart/thaicard-agent.desktop"
install -m 0644 "$here/thaicard-agent.desktop" "$pkg/usr/share/applications/thaicard-agent.desktop"
if [ "${KIOSK:-0}" = 1 ]; then
  install -m 0644 "$here/thaicard-agent-kiosk.desktop" "$pkg/etc/xdg/autostart/thaicard-agent-kiosk.desktop"
fi
install -m 0644 "$here/thaicard-agent.service" "$pkg/usr/lib/systemd/user/thaicard-agent.service"

python="${PYTHON:-$root/.venv/bin/python}"
command -v "$python" >/dev/null 2>&1 || python=python3
"$python" "$root/installer/make_icons.py" "$stage/icons" >/dev/null
install -m 0644 "$stage/icons/thaicard-agent.png" "$pkg/usr/share/icons/hicolor/256x256/apps/thaicard-agent.png"

# Chrome/Chromium/Edge 142+ ask before a public HTTPS page may call 127.0.0.1; these
# managed policies allow the agent's origins without the prompt. Plain package files (not
# conffiles), so that removing the package removes the exemption too.
policy="{
  \"LocalNetworkAccessAllowedForUrls\": [$json_list],
  \"LoopbackNetworkAllowedForUrls\": [$json_list]
}"
for dir in etc/chromium/policies/managed etc/opt/chrome/policies/managed etc/opt/edge/policies/managed; do
  printf '%s\n' "$policy" > "$pkg/$dir/thaicard-agent.json"
done
if [ -n "${ALLOWED_ORIGINS:-}" ]; then
  install -d "$pkg/etc/thaicard-agent"
  printf '{\n  "allowedOrigins": [%s]\n}\n' "$json_list" > "$pkg/etc/thaicard-agent/policy.json"
fi

# Firefox reads one policies.json, which may be the hospital's own: the maintainer scripts
# merge our SkipDomains entries into the file in force and take out exactly those again
# (thaicard-agent firefox-policy; docs/admin.md "Firefox"), instead of shipping a file.
# A broken admin file is left alone with a message: it never fails the install.
cat > "$pkg/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
case "\$1" in
  configure|abort-upgrade|abort-remove|abort-deconfigure)
    /opt/thaicard-agent/thaicard-agent firefox-policy add $word_list || \\
      echo "thaicard-agent: Firefox policy not changed / ไม่ได้แก้ไขนโยบาย Firefox" >&2
    ;;
esac
exit 0
EOF
# No postrm: with one, dpkg -r would keep the package in the config-files state.
cat > "$pkg/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
case "$1" in
  remove|upgrade|deconfigure|failed-upgrade)
    /opt/thaicard-agent/thaicard-agent firefox-policy remove || \
      echo "thaicard-agent: Firefox policy not changed / ไม่ได้แก้ไขนโยบาย Firefox" >&2
    [ "$1" != remove ] || rmdir /var/lib/thaicard-agent 2>/dev/null || true
    ;;
esac
exit 0
EOF
chmod 0755 "$pkg/DEBIAN/postinst" "$pkg/DEBIAN/prerm"

cat > "$pkg/usr/share/doc/thaicard-agent/copyright" <<'EOF'
Thai Card Agent
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
 The bundled Python runtime and libraries keep their own licenses.
EOF

installed_kb="$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)"
cat > "$pkg/DEBIAN/control" <<EOF
Package: thaicard-agent
Version: $version
Architecture: $arch
Maintainer: Thai Card Agent contributors <maintainers@thaicard-agent.invalid>
Depends: pcscd, libpcsclite1
Section: utils
Priority: optional
Installed-Size: $installed_kb
Description: Thai national ID card reader for web pages
 Reads the Thai national ID card with a PC/SC reader and serves it to the web
 pages an administrator allows, on 127.0.0.1:8189 (compatible with the NHSO
 agent's API). Shows a tray icon in every graphical session.
EOF

chmod -R u+rwX,go+rX,go-w "$pkg"
mkdir -p "$out"
deb="$out/thaicard-agent_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-xz}" --build "$pkg" "$deb" >/dev/null
echo "$deb"
