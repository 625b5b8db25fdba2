#!/usr/bin/env bash
# Make sure Debian's Chromium is available at /usr/bin/chromium for the
# real-browser widget tests (tests/browser). Idempotent: does nothing when the
# browser is already there. Playwright never downloads a browser in this
# project; it drives this system Chromium instead.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [[ -x "$CHROMIUM" ]]; then
    exit 0
fi

if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-chromium: $CHROMIUM missing; installing chromium and chromium-driver with apt-get" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
    if [[ ! -x "$CHROMIUM" ]]; then
        echo "ensure-chromium: apt-get finished but $CHROMIUM is still missing" >&2
        exit 1
    fi
    exit 0
fi

cat >&2 <<MSG
ensure-chromium: $CHROMIUM not found, and this script can only install it
as root on a Debian/Ubuntu system (apt-get). Please install it yourself:

    sudo apt-get update && sudo apt-get install -y chromium chromium-driver

(the browser tests in tests/browser need the Debian 'chromium' package at
$CHROMIUM; Playwright is configured never to download its own browser).
MSG
exit 1
