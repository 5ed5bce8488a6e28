"""Re-run the surviving mutants of code that runs at import time against the whole test selection.

mutmut picks, for each mutant, the tests that called the mutated function while it collected its stats. The
SQL stores render their statements from the lifecycle rules when they are imported, and the SSRF guard builds
its refusal tables, so those functions are called by no test at all (or by whichever test happened to import
them first): their mutants "survive" without a relevant test being run. This script runs the lifecycle, address
and SQLite contract tests against each such survivor (in a fresh interpreter, so the import sees the mutant)
and records the verdict where ``mutmut results`` and ``scripts/mutation_score.py`` read it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

IMPORT_TIME_MODULES = ("scanq.store.sqlite.statements", "scanq.store.sql_rules", "scanq.scanners.net.addresses")
# A quick selection first; only its survivors meet the slower contract tests.
SELECTIONS = [
    ["tests/unit/test_sqlite_store.py", "tests/unit/test_lifecycle.py", "tests/unit/scanners/test_addresses.py"],
    ["tests/contract/", "-k", "sqlite"],
]
KILLED, SURVIVED = 1, 0
JOBS = int(os.environ.get("MUTATION_JOBS", "2"))


def is_killed(name: str) -> bool:
    for selection in SELECTIONS:
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", "-p", "no:cacheprovider", *selection],
            cwd="mutants",
            env={**os.environ, "PYTHONPATH": "src", "MUTANT_UNDER_TEST": name},
            capture_output=True,
            check=False,
        )
        if run.returncode != 0:
            print(f"killed   {name}", flush=True)
            return True
    print(f"survived {name}", flush=True)
    return False


def main() -> None:
    """Recheck the survivors of the import-time modules, or of the modules named as arguments."""
    for module in sys.argv[1:] or IMPORT_TIME_MODULES:
        meta = Path("mutants/src", *module.split(".")).with_suffix(".py.meta")
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        codes: dict[str, int | None] = data["exit_code_by_key"]
        survivors = sorted(name for name, code in codes.items() if code == SURVIVED)
        with ThreadPoolExecutor(JOBS) as pool:
            for name, killed in zip(survivors, pool.map(is_killed, survivors), strict=True):
                codes[name] = KILLED if killed else SURVIVED
                meta.write_text(json.dumps(data))  # after each verdict: an interrupted recheck keeps them


if __name__ == "__main__":
    main()
