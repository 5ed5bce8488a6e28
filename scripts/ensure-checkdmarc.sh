#!/usr/bin/env bash
# The DNS reference tests compare the dns scanner with checkdmarc 6, which needs cryptography >= 50 while
# sslyze (the TLS reference, in the dev extra) needs < 47: checkdmarc gets a virtualenv of its own,
# .venv-checkdmarc, run as a subprocess by tests/reference/checkdmarc_probe.py.
set -euo pipefail
cd "$(dirname "$0")/.."
SPEC="checkdmarc>=6.0,<7"
stamp=.venv-checkdmarc/.installed
if [[ -x .venv-checkdmarc/bin/python && -f "$stamp" && "$(cat "$stamp")" == "$SPEC" ]]; then exit 0; fi
echo "installing $SPEC into .venv-checkdmarc" >&2
"${PYTHON:-python3}" -m venv .venv-checkdmarc
if .venv-checkdmarc/bin/python -m pip install --quiet --disable-pip-version-check "$SPEC" >&2; then
    echo "$SPEC" > "$stamp"
else
    echo "checkdmarc install failed: the DNS reference tests will skip (fail under CI=true)" >&2
fi
