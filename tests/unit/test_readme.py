"""The README's settings table must list every setting, so the docs cannot drift from the code."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from scanq.config import ENV_PREFIX, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_with_flag_and_variable() -> None:
    text = README.read_text()
    missing = [
        f.name
        for f in fields(Settings)
        if f"`--{f.name.replace('_', '-')}`" not in text or f"`{ENV_PREFIX}{f.name.upper()}`" not in text
    ]
    assert missing == []
