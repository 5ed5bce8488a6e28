# shellcheck shell=bash
# ensure_venv SPEC: create .venv on first use and (re)install SPEC when pyproject.toml changed since the last install.
ensure_venv() {
    local spec="$1"
    local python="${PYTHON:-python3}"
    if [[ ! -x .venv/bin/python ]]; then
        echo "creating .venv" >&2
        "$python" -m venv .venv
        .venv/bin/python -m pip install --quiet --upgrade pip >&2
    fi
    local stamp=".venv/.installed-$(echo "$spec" | tr -c 'a-z' '_')"
    local want
    want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
        echo "installing scanq$spec into .venv" >&2
        .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$spec" >&2
        echo "$want" > "$stamp"
    fi
}
