"""The README's settings tables must list every setting (core and plugin), so the docs cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from scanq.config import setting_specs

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_every_setting_with_flag_and_variable() -> None:
    text = README.read_text()
    missing = [spec.key for spec in setting_specs() if f"`{spec.flag}`" not in text or f"`{spec.env}`" not in text]
    assert missing == []
