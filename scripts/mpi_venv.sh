#!/usr/bin/env bash
# Create (or reuse) a virtualenv holding an MPI implementation and its Python bindings, both
# from PyPI wheels: MPICH (mpiexec/hydra, libmpi) and mpi4py. The multi-instance task test
# (tests/e2e/test_multi_instance.py) runs a real MPI hello world with it. Usage:
#
#     scripts/mpi_venv.sh [DIR]        # DIR defaults to .venv-mpi in the repository root
#
# Idempotent and cached: when DIR/bin/mpiexec exists and DIR/bin/python imports mpi4py at the
# wanted versions nothing is done (about 40 MB; about a second to install with uv). Installs
# with the repository's uv (.venv/bin/uv, else one on PATH), falling back to pip. The last line
# of its standard output is the directory.
set -euo pipefail

MPICH_VERSION="5.0.2"
MPI4PY_VERSION="4.1.2"
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV_DIR=${1:-"$REPO_ROOT/.venv-mpi"}
PYTHON=${MPI_VENV_PYTHON:-python3}

mkdir -p "$(dirname "$VENV_DIR")"
VENV_DIR=$(cd "$(dirname "$VENV_DIR")" && pwd)/$(basename "$VENV_DIR")
VENV_PY="$VENV_DIR/bin/python"

ready() {
    [ -x "$VENV_DIR/bin/mpiexec" ] && [ -x "$VENV_PY" ] && [ "$("$VENV_PY" -c \
        'import mpi4py, importlib.metadata as m; print(mpi4py.__version__, m.version("mpich"))' \
        2>/dev/null)" = "$MPI4PY_VERSION $MPICH_VERSION" ]
}

# Serialise concurrent callers (parallel test workers) on the same venv.
if command -v flock >/dev/null 2>&1; then
    exec 9>"${TMPDIR:-/tmp}/mpi_venv-$(printf '%s' "$VENV_DIR" | cksum | cut -d' ' -f1).lock"
    flock 9
fi

if ready; then
    echo "mpi_venv: $VENV_DIR already has mpich $MPICH_VERSION and mpi4py $MPI4PY_VERSION"
    echo "$VENV_DIR"
    exit 0
fi

start=$(date +%s)
PACKAGES=("mpich==$MPICH_VERSION" "mpi4py==$MPI4PY_VERSION")
UV="$REPO_ROOT/.venv/bin/uv"
[ -x "$UV" ] || UV=$(command -v uv || true)
if [ -n "$UV" ]; then
    "$PYTHON" -m venv --clear --without-pip "$VENV_DIR"
    "$UV" pip install --quiet --python "$VENV_PY" "${PACKAGES[@]}"
else
    "$PYTHON" -m venv --clear "$VENV_DIR"
    "$VENV_PY" -m pip install --quiet "${PACKAGES[@]}"
fi
ready || { echo "mpi_venv: $VENV_DIR does not work after installing ${PACKAGES[*]}" >&2; exit 1; }
echo "mpi_venv: mpich $MPICH_VERSION and mpi4py $MPI4PY_VERSION ready in $VENV_DIR ($(( $(date +%s) - start )) s)"
echo "$VENV_DIR"
