"""The lock: requirements/*.txt, pinned and hash-checked, generated from pyproject.toml.

``requirements/runtime.txt`` is what ``./run`` installs (``scanq[all]``),
``requirements/dev.txt`` what ``./test`` installs (``scanq[dev]``); both with
``pip install --require-hashes``, then ``pip install --no-deps -e .``. The
files are universal (any platform, Python 3.11 and later) and list the hash
of every distribution of each pinned release.

Each file starts with ``# pyproject-hash: <sha256>``, a hash of the
dependency lists in pyproject.toml. ``stale()`` recomputes it, offline and in
a few milliseconds; ``tests/unit/test_lock.py`` fails when a dependency
changed and the lock was not regenerated.

Usage:
    scripts/lock.sh [UV OPTIONS]    regenerate both files (installs the pinned uv on first use);
                                    e.g. ``--upgrade`` or ``--upgrade-package starlette``
    python3 scripts/lock.py --check exit 1 when a file is out of date

Stdlib only: it runs on the interpreter that creates the project's .venv.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Dev first: runtime is then resolved within dev's pins, so ./run and ./test never pull a package two ways.
LOCKS = {"requirements/dev.txt": "dev", "requirements/runtime.txt": "all"}
HASH_PREFIX = "# pyproject-hash: "
REGENERATE = "scripts/lock.sh"
PYTHON_FLOOR = "3.11"


def inputs_hash(pyproject: Path) -> str:
    """SHA-256 of what the lock is resolved from: requires-python and every dependency list.

    Args:
        pyproject: the pyproject.toml to read.

    Lists are sorted, so reordering dependencies does not mark the lock stale; any other edit does.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    inputs = {
        "requires-python": project.get("requires-python", ""),
        "dependencies": sorted(project.get("dependencies", [])),
        "optional-dependencies": {
            extra: sorted(requirements) for extra, requirements in project.get("optional-dependencies", {}).items()
        },
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded_hash(lock: Path) -> str | None:
    """The hash in a lock file's first line, or None when the file or the line is missing."""
    try:
        first = lock.read_text().split("\n", 1)[0]
    except FileNotFoundError:
        return None
    return first.removeprefix(HASH_PREFIX).split()[0] if first.startswith(HASH_PREFIX) else None


def stale(root: Path = ROOT) -> list[str]:
    """One line per lock file that is missing or was generated from other dependency lists; empty when current.

    Args:
        root: the project directory (pyproject.toml and requirements/).
    """
    want = inputs_hash(root / "pyproject.toml")
    return [
        f"{name} is out of date with pyproject.toml: run {REGENERATE}"
        for name in LOCKS
        if recorded_hash(root / name) != want
    ]


def pins(lock: Path) -> list[str]:
    """The requirement lines of a lock file (``name==version ; marker``), without hashes and comments."""
    text = lock.read_text().replace("\\\n", " ")
    found = []
    for line in text.splitlines():
        requirement = line.split("#", 1)[0].split(" --hash=", 1)[0].strip()
        if requirement and not requirement.startswith("-"):
            found.append(requirement)
    return found


def compile_lock(
    uv: str, *, root: Path, extra: str, output: Path, constraints: Path | None, options: list[str]
) -> None:
    """Resolve ``scanq[extra]`` with uv into ``output`` and stamp it with the pyproject hash.

    Args:
        uv: the uv executable.
        root: the project directory.
        extra: the optional-dependency group to lock.
        output: the lock file; its current pins are kept where they still fit (uv's preference).
        constraints: a lock file (relative to root) whose pins the resolution must stay within, or None.
        options: extra uv options, e.g. ``["--upgrade"]``.
    """
    command = [
        uv,
        "pip",
        "compile",
        "pyproject.toml",
        "--extra",
        extra,
        "--universal",
        "--python-version",
        PYTHON_FLOOR,
        "--generate-hashes",
        "--custom-compile-command",
        REGENERATE,
        "--quiet",
        "--output-file",
        str(output),
        *(["--constraint", str(constraints)] if constraints else []),
        *options,
    ]
    subprocess.run(command, cwd=root, check=True)
    header = f"{HASH_PREFIX}{inputs_hash(root / 'pyproject.toml')} (the dependency lists of pyproject.toml)\n"
    output.write_text(header + output.read_text())


def regenerate(uv: str, *, root: Path, options: list[str]) -> None:
    """Write every lock file: dev from pyproject.toml, then runtime constrained to dev's pins."""
    (root / "requirements").mkdir(exist_ok=True)
    constraints: Path | None = None
    for name, extra in LOCKS.items():
        output = root / name
        compile_lock(uv, root=root, extra=extra, output=output, constraints=constraints, options=options)
        print(f"wrote {name} (scanq[{extra}], {len(pins(output))} pins)")
        constraints = constraints or Path(name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a lock file is out of date; change nothing")
    parser.add_argument("--uv", default="uv", help="the uv executable (scripts/lock.sh passes its own)")
    args, options = parser.parse_known_args(argv)
    if args.check:
        problems = stale()
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1 if problems else 0
    regenerate(args.uv, root=ROOT, options=options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
