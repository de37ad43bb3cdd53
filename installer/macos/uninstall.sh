#!/bin/sh
# Removes Thai Card Agent from a Mac (a .pkg has no uninstaller). Run as root:
#   sudo sh uninstall.sh
# The NHSO token stays in each user's login keychain until that user deletes it
# (Keychain Access, item "thaicard-agent").
set -eu
LABEL=th.thaicard.agent.tray
PLIST=/Library/LaunchAgents/$LABEL.plist
if [ "$(id -u)" -ne 0 ]; then
  echo "Run as root: sudo sh $0" >&2
  exit 1
fi
for uid in $(ps -axo uid=,comm= | awk '/[l]oginwindow$/ {print $1}' | sort -u); do
  launchctl bootout "gui/$uid/$LABEL" 2>/dev/null || true
  launchctl bootout "gui/$uid/th.thaicard.agent.kiosk" 2>/dev/null || true
done
# Our Firefox SkipDomains entries, and only them (the pkg recorded what it added).
"/Applications/Thai Card Agent.app/Contents/MacOS/thaicard-agent" firefox-policy remove \
  || echo "Firefox policy not changed" >&2
rmdir "/Library/Application Support/thaicard-agent" 2>/dev/null || true
rm -f "$PLIST" /Library/LaunchAgents/th.thaicard.agent.kiosk.plist
rm -rf "/Applications/Thai Card Agent.app"
pkgutil --forget th.thaicard.agent >/dev/null 2>&1 || true
echo "Thai Card Agent removed."
