"""The lock (requirements/*.txt) follows pyproject.toml: a dependency added without scripts/lock.sh fails here."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load_lock_script() -> ModuleType:
    """scripts/lock.py, which is no package: ./run and ./test must not need scanq's venv to check the lock."""
    spec = importlib.util.spec_from_file_location("scanq_lock_script", ROOT / "scripts" / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lock = load_lock_script()

PYPROJECT = """
[project]
name = "x"
requires-python = ">=3.11"
dependencies = ["a>=1", "b>=2"]
[project.optional-dependencies]
dev = ["c"]
"""


def test_the_lock_is_current_with_pyproject() -> None:
    problems = lock.stale(ROOT)
    assert not problems, "\n".join(problems)


def test_the_hash_follows_the_dependency_lists_and_nothing_else(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(PYPROJECT)
    original = lock.inputs_hash(pyproject)
    pyproject.write_text(PYPROJECT.replace('"a>=1", "b>=2"', '"b>=2", "a>=1"') + '[tool.x]\ny = "z"\n')
    assert lock.inputs_hash(pyproject) == original
    for edit in ('"a>=1"', '"a>=1.1"'), ('"c"', '"c", "d"'), (">=3.11", ">=3.12"):
        pyproject.write_text(PYPROJECT.replace(*edit))
        assert lock.inputs_hash(pyproject) != original, edit


def test_a_missing_lock_or_header_is_stale(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "dev.txt").write_text("a==1\n")
    assert lock.stale(tmp_path) == [
        "requirements/dev.txt is out of date with pyproject.toml: run scripts/lock.sh",
        "requirements/runtime.txt is out of date with pyproject.toml: run scripts/lock.sh",
    ]


def test_runtime_pins_are_dev_pins_and_every_pin_is_hashed() -> None:
    dev, runtime = (ROOT / "requirements" / "dev.txt"), (ROOT / "requirements" / "runtime.txt")
    # Markers may differ (runtime needs typing-extensions on fewer Pythons than dev), releases may not.
    releases = {path: {pin.split(";")[0].strip() for pin in lock.pins(path)} for path in (dev, runtime)}
    assert releases[runtime] <= releases[dev]
    for path in dev, runtime:
        entries = path.read_text().replace("\\\n", " ").splitlines()
        unhashed = [entry for entry in entries if "==" in entry and "--hash=sha256:" not in entry]
        assert unhashed == [], path.name
