#!/usr/bin/env bash
# Set up (or refresh) the project virtualenv in .venv: idempotent, quick when up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -x .venv/bin/uv ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.4"
fi
stamp=.venv/.hybatch-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/uv pip install --quiet --python .venv/bin/python -e ".[dev]"
  touch "$stamp"
fi
