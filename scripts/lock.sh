#!/usr/bin/env bash
# Regenerate requirements/*.txt (the lock) from pyproject.toml: `scripts/lock.sh`, or `scripts/lock.sh --upgrade`.
# Installs the pinned uv into .lock-venv on first use; ./run and ./test need neither it nor uv.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.8
python="${PYTHON:-python3}"
if [[ "$(.lock-venv/bin/uv --version 2>/dev/null | cut -d" " -f2)" != "$UV_VERSION" ]]; then
    echo "installing uv $UV_VERSION into .lock-venv" >&2
    rm -rf .lock-venv
    "$python" -m venv .lock-venv
    .lock-venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION" >&2
fi
exec "$python" scripts/lock.py --uv .lock-venv/bin/uv "$@"
