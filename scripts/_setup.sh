# Sourced by the scripts: make .venv with the project and its test extra, once
# per change of pyproject.toml. Needs only Python >= 3.11 and the package index.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ]; then
    PY="${PYTHON:-}"
    if [ -z "$PY" ]; then
        for candidate in python3 python3.13 python3.12 python3.11; do
            if command -v "$candidate" >/dev/null &&
                "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
                PY="$candidate"; break
            fi
        done
    fi
    [ -n "$PY" ] || { echo "edgeswarm needs Python >= 3.11" >&2; exit 2; }
    "$PY" -m venv .venv
fi
EXTRAS="${EDGESWARM_EXTRAS:-test}"
STAMP=".venv/.edgeswarm-installed-$EXTRAS"
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ]; then
    echo "setting up .venv (edgeswarm[$EXTRAS])" >&2
    if ! { .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip &&
           .venv/bin/python -m pip install -q --disable-pip-version-check \
               -e ".[$EXTRAS]"; } >.venv/install.log 2>&1; then
        cat .venv/install.log >&2
        echo "installing edgeswarm failed (log above, also in .venv/install.log)" >&2
        exit 2
    fi
    touch "$STAMP"
fi
