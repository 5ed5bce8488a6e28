"""The architecture holds: the import rules of docs/architecture.md, and small modules.

The rules are ``import-linter`` contracts in ``pyproject.toml`` (``[tool.importlinter]``);
this runs ``lint-imports`` on them, so a layer skipped or a driver imported in the
wrong place fails the suite, not only a review.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = REPO_ROOT / "src"
MAX_MODULE_LINES = 400
LINT_TIMEOUT_S = 50.0


def test_import_rules_hold() -> None:
    # The interpreter running the tests has import-linter (the `dev` extra) and sees scanq.
    command = [
        sys.executable,
        "-c",
        "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())",
        "--no-cache",
    ]

    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=LINT_TIMEOUT_S, check=False)

    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {path.relative_to(SOURCE_ROOT).as_posix(): _line_count(path) for path in SOURCE_ROOT.rglob("*.py")}

    too_long = {name: lines for name, lines in sorted(sizes.items()) if lines > MAX_MODULE_LINES}

    assert sizes, f"no modules found under {SOURCE_ROOT}"
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def _line_count(path: Path) -> int:
    with path.open(encoding="utf-8") as source:
        return sum(1 for _ in source)
