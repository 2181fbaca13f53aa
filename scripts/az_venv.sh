#!/usr/bin/env bash
# Create (or reuse) a virtualenv holding the Azure CLI (`az`, pip package azure-cli), for the
# `az batch` compatibility tests in tests/az_cli/. Usage:
#
#     scripts/az_venv.sh [DIR]        # DIR defaults to .venv-az in the repository root
#
# Idempotent: when DIR/bin/az --version already works nothing is installed. Installs with the
# repository's uv (.venv/bin/uv, else one on PATH) when there is one, falling back to the
# venv's own pip (set AZ_VENV_NO_UV=1 to use pip only). AZ_VENV_PYTHON picks the interpreter
# the venv is made from (default python3). AZ_VENV_SPEC overrides the requirement (default
# azure-cli, i.e. the newest one the package index has).
#
# The `az --version` probe runs offline: telemetry off, warnings off, no survey or dynamic
# extension install, a throw-away AZURE_CONFIG_DIR, and every non-local request sent to a
# closed port (callers running `az` themselves should do the same; tests/az_cli/ does). Prints
# what it did; the last line of its standard output is the path of the venv's `az`.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_DIR=${1:-"$REPO_ROOT/.venv-az"}
PYTHON=${AZ_VENV_PYTHON:-python3}
SPEC=${AZ_VENV_SPEC:-azure-cli}

mkdir -p "$(dirname "$VENV_DIR")"
VENV_DIR=$(cd "$(dirname "$VENV_DIR")" && pwd)/$(basename "$VENV_DIR")
VENV_PY="$VENV_DIR/bin/python"
AZ="$VENV_DIR/bin/az"

# Keep az away from the internet and from the user's ~/.azure while we probe it. `az --version`
# looks the newest release up on azcliprod.blob.core.windows.net: the proxy variables send that
# (and anything else not local) to a closed local port, so it fails at once instead of going out
# or hanging on DNS. They apply to `az` only, never to the installer.
CONFIG_DIR=$(mktemp -d "${TMPDIR:-/tmp}/az_venv-config.XXXXXX")
trap 'rm -rf "$CONFIG_DIR"' EXIT
DEAD_PROXY=http://127.0.0.1:9
AZ_ENV=(
    AZURE_CONFIG_DIR="$CONFIG_DIR"
    AZURE_CORE_COLLECT_TELEMETRY=no
    AZURE_CORE_ONLY_SHOW_ERRORS=yes
    AZURE_CORE_SURVEY_MESSAGE=no
    AZURE_CORE_NO_COLOR=yes
    AZURE_CORE_ERROR_RECOMMENDATION=off
    AZURE_EXTENSION_USE_DYNAMIC_INSTALL=no
    HTTP_PROXY="$DEAD_PROXY" HTTPS_PROXY="$DEAD_PROXY" NO_PROXY=127.0.0.1,localhost
    http_proxy="$DEAD_PROXY" https_proxy="$DEAD_PROXY" no_proxy=127.0.0.1,localhost
)
for name in PYTHONPATH PYTHONHOME VIRTUAL_ENV PYTHONSTARTUP; do
    unset "$name"
done

# A pinned spec (azure-cli==X) must find exactly X installed to count as done.
WANT_VERSION=""
if [[ "$SPEC" =~ ^azure-cli==([0-9][0-9A-Za-z.]*)$ ]]; then
    WANT_VERSION=${BASH_REMATCH[1]}
fi

az_version() {
    [ -x "$AZ" ] || return 0
    # `az --version` prints "azure-cli   2.x.y" first.
    env "${AZ_ENV[@]}" "$AZ" --version --only-show-errors 2>/dev/null \
        | awk '/^azure-cli / {print $2; exit}' || true
}

version_ok() {
    [ -n "$1" ] && { [ -z "$WANT_VERSION" ] || [ "$1" = "$WANT_VERSION" ]; }
}

# Serialise concurrent callers (e.g. parallel test workers) on the same venv.
if command -v flock >/dev/null 2>&1; then
    LOCK_FILE="${TMPDIR:-/tmp}/az_venv-$(printf '%s' "$VENV_DIR" | cksum | cut -d' ' -f1).lock"
    exec 9>"$LOCK_FILE"
    flock 9
fi

have=$(az_version)
if version_ok "$have"; then
    echo "az_venv: $VENV_DIR already has azure-cli $have; nothing to do"
    echo "$AZ"
    exit 0
fi

start=$(date +%s)
UV=""
if [ -z "${AZ_VENV_NO_UV:-}" ]; then
    UV="$REPO_ROOT/.venv/bin/uv"
    if [ ! -x "$UV" ]; then
        UV=$(command -v uv || true)
    fi
fi

if [ -x "$VENV_PY" ] && "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
    echo "az_venv: reusing existing virtualenv $VENV_DIR (azure-cli: ${have:-none})"
else
    echo "az_venv: creating virtualenv $VENV_DIR with $("$PYTHON" --version 2>&1)"
    if [ -n "$UV" ]; then
        "$PYTHON" -m venv --clear --without-pip "$VENV_DIR"
    else
        "$PYTHON" -m venv --clear "$VENV_DIR"
    fi
fi

pip_install() {
    if ! "$VENV_PY" -m pip --version >/dev/null 2>&1; then
        "$VENV_PY" -m ensurepip --upgrade >/dev/null
    fi
    "$VENV_PY" -m pip install --quiet "$SPEC"
}

if [ -n "$UV" ]; then
    echo "az_venv: installing $SPEC (and its dependencies) with $UV"
    if ! "$UV" pip install --quiet --python "$VENV_PY" "$SPEC"; then
        echo "az_venv: uv failed; retrying with pip"
        pip_install
    fi
else
    echo "az_venv: installing $SPEC (and its dependencies) with pip"
    pip_install
fi

got=$(az_version)
if ! version_ok "$got"; then
    echo "az_venv: $AZ --version reports '${got:-nothing}', not ${WANT_VERSION:-a version}," \
        "after installing $SPEC:" >&2
    env "${AZ_ENV[@]}" "$AZ" --version --only-show-errors >&2 || true
    exit 1
fi
size=$(du -sh "$VENV_DIR" 2>/dev/null | cut -f1 || echo "?")
echo "az_venv: azure-cli $got ready in $VENV_DIR ($(( $(date +%s) - start )) s, $size)"
echo "$AZ"
