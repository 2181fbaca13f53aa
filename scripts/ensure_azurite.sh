#!/usr/bin/env bash
# Make sure Azurite (Azure Storage emulator, from npm) is installed in a cache directory and
# print the path of its blob-service executable. The API tests that upload to blob storage
# call this (tests/support/azurite.py). Needs node and npm (Debian: apt-get install nodejs npm).
set -euo pipefail

VERSION=${AZURITE_VERSION:-3.35.0}
CACHE=${HYBATCH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hybatch}/azurite-$VERSION
BIN="$CACHE/node_modules/.bin/azurite-blob"

if [ -x "$BIN" ]; then
    echo "$BIN"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "ensure_azurite: npm not found; install Node.js and npm (apt-get install nodejs npm)" >&2
    exit 1
fi

mkdir -p "$CACHE"
# a private prefix: nothing global is touched; a second run finds the cached install
npm install --prefix "$CACHE" --no-audit --no-fund --loglevel=error "azurite@$VERSION" >&2

if [ ! -x "$BIN" ]; then
    echo "ensure_azurite: azurite installed but $BIN is missing" >&2
    exit 1
fi
echo "$BIN"
