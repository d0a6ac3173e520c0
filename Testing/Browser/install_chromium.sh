#!/usr/bin/env bash
# Headless Chromium and its driver from Debian packages, for Testing/Browser (the report checked in a
# real browser). Idempotent: does nothing when both are installed; apt-get only when one is missing.
# Called by `make test` before the test suite; needs root (or sudo) the first time.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_chromium.sh: chromium is missing and this user cannot install packages (not root, no sudo)" >&2
        echo "  install it with: apt-get install -y chromium chromium-driver" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
command -v chromium >/dev/null && echo "install_chromium.sh: $(chromium --version 2>/dev/null | tail -1)"
