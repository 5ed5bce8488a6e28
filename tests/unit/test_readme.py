"""The README's settings tables must list every setting (core and plugin), and the curl examples must work as shown."""

from __future__ import annotations

import re
from pathlib import Path

from scanq.config import setting_specs

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def test_readme_lists_every_setting_with_flag_and_variable() -> None:
    text = README.read_text()
    missing = [spec.key for spec in setting_specs() if f"`{spec.flag}`" not in text or f"`{spec.env}`" not in text]
    assert missing == []


def curl_commands(text: str) -> list[str]:
    """Every curl command in ``text``, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines() if line.lstrip().startswith(("curl ", "ID=$(curl"))]


def test_every_curl_example_with_a_body_declares_json() -> None:
    # The services refuse a body without Content-Type: application/json (415); curl -d would send a form type.
    commands = [
        cmd for doc in [README, *sorted((ROOT / "docs").glob("*.md"))] for cmd in curl_commands(doc.read_text())
    ]
    with_body = [cmd for cmd in commands if re.search(r"\s(-d|--data\S*)\s", cmd)]
    assert len(with_body) >= 3
    assert [cmd for cmd in with_body if "Content-Type: application/json" not in cmd] == []
