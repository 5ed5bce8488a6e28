"""Print mutmut's results per module: killed/total and the surviving mutants (run after ``mutmut run``).

A mutant is killed when a test failed (or timed out) with it in place; ``no tests`` means no selected test
runs its code at all. ``mutmut show NAME`` prints one mutant's diff.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255, 37}
SURVIVED = {0}
NO_TESTS = {5, 33}


def main() -> None:
    root = Path("mutants/src")
    print(f"{'module':<44} {'killed':>7} {'tested':>7} {'score':>7}  survived  no tests  not run")
    survivors: list[str] = []
    for meta in sorted(root.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        if not codes:
            continue
        count = Counter(
            "killed"
            if code in KILLED
            else "survived"
            if code in SURVIVED
            else "no tests"
            if code in NO_TESTS
            else "not run"
            if code is None
            else "other"
            for code in codes.values()
        )
        tested = count["killed"] + count["survived"] + count["no tests"] + count["other"]
        if not tested:
            continue
        module = str(meta.relative_to(root)).removesuffix(".py.meta").replace("/", ".")
        score = f"{100 * count['killed'] / tested:.1f}%"
        print(
            f"{module:<44} {count['killed']:>7} {tested:>7} {score:>7}"
            f"  {count['survived']:>8}  {count['no tests']:>8}  {count['not run']:>7}"
        )
        survivors += [name for name, code in codes.items() if code in SURVIVED or code in NO_TESTS]
    if survivors:
        print("\nsurvivors and mutants no test reaches (mutmut show NAME):")
        print("\n".join(f"  {name}" for name in sorted(survivors)))


if __name__ == "__main__":
    main()
