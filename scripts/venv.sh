# shellcheck shell=bash
# ensure_venv LOCK: create .venv on first use; install LOCK (requirements/*.txt: pinned, hash-checked) and then
# scanq itself (editable, no dependencies) whenever LOCK or pyproject.toml changed since the last install.
ensure_venv() {
    local lock="$1"
    local python="${PYTHON:-python3}"
    if [[ ! -x .venv/bin/python ]]; then
        echo "creating .venv" >&2
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip >&2
    fi
    local stamp
    stamp=".venv/.installed-$(basename "$lock" .txt)"
    local want
    want="$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "installing $lock and scanq into .venv" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e . >&2
        echo "$want" > "$stamp"
    fi
}
