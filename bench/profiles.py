"""Summarise py-spy's collapsed stacks (``--format raw``): where a process spent its samples.

``python -m bench.profiles FILE [--top 25]`` prints the functions with the most
samples on top of the stack (self time) and with the most samples anywhere on
the stack (inclusive time), as percentages of all samples. Idle time shows up
as the event loop's ``select``/``poll`` frames.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    """Each line is ``frame;frame;… count``; frames outermost first."""
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[tuple(stack.split(";"))] += int(count)
    return stacks


def summarize(stacks: Counter[tuple[str, ...]], *, top: int) -> str:
    """Self and inclusive tables, ``top`` rows each."""
    total = sum(stacks.values()) or 1
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for stack, count in stacks.items():
        if stack:
            own[stack[-1]] += count
        for frame in set(stack):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "self%  function"]
    lines += [f"{100 * n / total:5.1f}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "incl%  function"]
    lines += [f"{100 * n / total:5.1f}  {frame}" for frame, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for path in args.files:
        print(f"== {path}")
        print(summarize(read_stacks(path), top=args.top))
        print()


if __name__ == "__main__":
    main()
