#!/usr/bin/env bash
# Create (or reuse) a virtualenv holding the legacy msrest-based Azure Batch SDK, azure-batch
# 14.2.0, for the compatibility scenario in tests/legacy/. Usage:
#
#     scripts/legacy_venv.sh [DIR]        # DIR defaults to .venv-legacy in the repository root
#
# Idempotent: when DIR/bin/python already imports azure.batch 14.2.0 nothing is done. Installs
# with the repository's uv (.venv/bin/uv, else one on PATH) when there is one, falling back to
# the venv's own pip (set LEGACY_VENV_NO_UV=1 to use pip only). LEGACY_VENV_PYTHON picks the
# interpreter the venv is made from (default python3). Prints what it did; the last line of
# its standard output is the venv's python.
set -euo pipefail

WANT_VERSION="14.2.0"
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_DIR=${1:-"$REPO_ROOT/.venv-legacy"}
PYTHON=${LEGACY_VENV_PYTHON:-python3}

mkdir -p "$(dirname "$VENV_DIR")"
VENV_DIR=$(cd "$(dirname "$VENV_DIR")" && pwd)/$(basename "$VENV_DIR")
VENV_PY="$VENV_DIR/bin/python"

installed_version() {
    [ -x "$VENV_PY" ] || return 0
    "$VENV_PY" -c 'import azure.batch; print(azure.batch.__version__)' 2>/dev/null || true
}

# Serialise concurrent callers (e.g. parallel test workers) on the same venv.
if command -v flock >/dev/null 2>&1; then
    LOCK_FILE="${TMPDIR:-/tmp}/legacy_venv-$(printf '%s' "$VENV_DIR" | cksum | cut -d' ' -f1).lock"
    exec 9>"$LOCK_FILE"
    flock 9
fi

if [ "$(installed_version)" = "$WANT_VERSION" ]; then
    echo "legacy_venv: $VENV_DIR already has azure-batch $WANT_VERSION; nothing to do"
    echo "$VENV_PY"
    exit 0
fi

start=$(date +%s)
UV=""
if [ -z "${LEGACY_VENV_NO_UV:-}" ]; then
    UV="$REPO_ROOT/.venv/bin/uv"
    if [ ! -x "$UV" ]; then
        UV=$(command -v uv || true)
    fi
fi

if [ -x "$VENV_PY" ] && "$VENV_PY" -c 'import sys' >/dev/null 2>&1; then
    echo "legacy_venv: reusing existing virtualenv $VENV_DIR (azure-batch: $(installed_version || true))"
else
    echo "legacy_venv: creating virtualenv $VENV_DIR with $("$PYTHON" --version 2>&1)"
    if [ -n "$UV" ]; then
        "$PYTHON" -m venv --clear --without-pip "$VENV_DIR"
    else
        "$PYTHON" -m venv --clear "$VENV_DIR"
    fi
fi

PACKAGES=("azure-batch==$WANT_VERSION")
pip_install() {
    if ! "$VENV_PY" -m pip --version >/dev/null 2>&1; then
        "$VENV_PY" -m ensurepip --upgrade >/dev/null
    fi
    "$VENV_PY" -m pip install --quiet "${PACKAGES[@]}"
}

if [ -n "$UV" ]; then
    echo "legacy_venv: installing ${PACKAGES[*]} (and its dependencies) with $UV"
    if ! "$UV" pip install --quiet --python "$VENV_PY" "${PACKAGES[@]}"; then
        echo "legacy_venv: uv failed; retrying with pip"
        pip_install
    fi
else
    echo "legacy_venv: installing ${PACKAGES[*]} (and its dependencies) with pip"
    pip_install
fi

got=$(installed_version)
if [ "$got" != "$WANT_VERSION" ]; then
    echo "legacy_venv: expected azure-batch $WANT_VERSION in $VENV_DIR, found '${got:-none}'" >&2
    exit 1
fi
"$VENV_PY" -c 'import msrest, msrestazure, azure.batch.batch_auth' >/dev/null
echo "legacy_venv: azure-batch $got ready in $VENV_DIR ($(( $(date +%s) - start )) s)"
echo "$VENV_PY"
