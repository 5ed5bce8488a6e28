#!/usr/bin/env bash
# The ingest benchmark confirms its load generator's figures with wrk (bench/wrk.py); install it when missing.
# Never fails: without root or apt the bench reports "wrk unavailable" in its table and measures the rest.
set -uo pipefail
if command -v wrk >/dev/null; then exit 0; fi
if [[ "$(id -u)" != "0" ]] || ! command -v apt-get >/dev/null; then
    echo "wrk missing and cannot be installed here (needs root and apt-get): the bench reports it unavailable" >&2
    exit 0
fi
echo "installing wrk (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq wrk >&2 || { apt-get update -qq >&2 || true; apt-get install -y -qq wrk >&2; } || echo "wrk install failed" >&2
exit 0
