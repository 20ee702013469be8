#!/usr/bin/env bash
# Installs what the report's browser test and Unicode captions need, from the
# distribution's packages: headless Chromium and the DejaVu fonts (fonts-noto-cjk
# adds CJK glyphs; optional, ~60 MB). Idempotent; a no-op when they are present.
# Usage: scripts/install_browser.sh   (make test runs it)
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 \
  || missing+=(chromium)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: missing ${missing[*]}; install them with your package manager" \
       "(Debian/Ubuntu: sudo apt-get install ${missing[*]}). The browser test is skipped" \
       "without Chromium unless REQUIRE_BROWSER=1." >&2
  exit 0
fi
echo "install_browser.sh: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
  || { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
