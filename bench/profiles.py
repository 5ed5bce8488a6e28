"""Summarise py-spy's collapsed stacks (``--format raw``): where a process spent its samples.

``python -m bench.profiles FILE [--top 25]`` prints the functions with the most
samples on top of the stack (self time) and with the most samples anywhere on
the stack (inclusive time), as percentages of all samples. Idle time shows up
as the event loop's ``select``/``poll`` frames.

``--by-module`` instead groups the self samples of an ingest process into the
parts of a request (``GROUPS``: uvicorn and the loop, the HTTP edge, Starlette,
scanq's API code, auth and quotas, validation, the service, the store on the
loop, the SQLite writer thread, JSON), leaving out the imports at start-up.
With ``--requests N`` (the requests the process answered while recorded) each
share is also given in µs per request: samples * the sampling interval / N.
Samples count time on a thread's stack, not CPU: the writer's ``COMMIT``
waiting for ``fsync`` is its own group for that reason.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

# Frames are "function (path/file.py:line)"; a C function (uvloop's loop, httptools, msgspec, sqlite3) shows up as
# the Python frame that called it.
_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]*)(?::(?P<line>\d+))?\)$")

# (group, file prefixes or "file:function" of the leaf frame); the first match wins.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON encode (responses)", ("scanq/api/http.py:json_response", "scanq/views.py", "msgspec/")),
    ("JSON decode + validation", ("scanq/api/http.py:decode_json", "scanq/submissions.py", "scanq/scanners/")),
    ("auth, quotas, limits", ("scanq/auth.py", "scanq/quotas.py", "scanq/api/callers.py", "scanq/api/limits.py")),
    (
        "scan service, models, ids",
        ("scanq/scans.py", "scanq/models.py", "<positional_maker", "scanq/ids.py", "uuid_utils/"),
    ),
    ("store, create path on the loop (PostgreSQL: with asyncpg)", ("scanq/store/", "asyncpg/")),
    # The edge's transport wrapper calls uvloop's write, which sends at once: this is the send system call.
    (
        "socket writes (the edge transport's write: send)",
        ("scanq/api/edge.py:_CycleTransport.write", "scanq/api/edge_parts.py:CycleTransport.write"),
    ),
    ("scanq HTTP edge (api/edge.py)", ("scanq/api/edge.py", "scanq/api/edge_parts.py")),
    ("scanq API (hot path, ingest, metrics, cross-site, errors)", ("scanq/api/", "prometheus_client/")),
    ("Starlette", ("starlette/",)),
    ("uvicorn + uvloop + httptools + asyncio", ("uvicorn/", "uvloop/", "httptools/", "asyncio/", "<")),
)
SOURCE_ROOT = Path(__file__).resolve().parent.parent / "src"
WRITER_THREAD = "scanq/store/sqlite/writer.py:Writer._write_forever"
COMMIT_LINE = re.compile(r'conn\.execute\("COMMIT"\)')


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


def _site(frame: str) -> tuple[str, str]:
    """``(file, function)`` of a frame; the file relative to its package (``scanq/api/http.py``)."""
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["file"] or "", match["function"]


def group_of(stack: tuple[str, ...], *, commit_lines: frozenset[str] = frozenset()) -> str | None:
    """The group of one stack's self sample; None for start-up imports."""
    if any("importlib._bootstrap" in frame for frame in stack):
        return None
    is_writer = any(f"{_site(frame)[0]}:{_site(frame)[1]}" == WRITER_THREAD for frame in stack)
    if is_writer:
        return "SQLite writer: COMMIT (fsync wait)" if stack[-1] in commit_lines else "SQLite writer: batch work"
    if any(_site(frame)[1] == "Thread._bootstrap" for frame in stack):
        return "other threads (store readers, to_thread)"
    file, function = _site(stack[-1])
    for name, prefixes in GROUPS:
        for prefix in prefixes:
            wanted_file, _, wanted_function = prefix.partition(":")
            if file.startswith(wanted_file) and (not wanted_function or function == wanted_function):
                return name
    return "other"


def by_module(
    stacks: Counter[tuple[str, ...]], *, requests: int | None, rate_hz: float, source: Path = SOURCE_ROOT
) -> str:
    """The self samples in ``GROUPS`` (start-up imports left out), as shares and µs per request.

    ``source``: where the profiled process's ``scanq`` package was (to find the writer's ``COMMIT`` line).
    """
    batch_frames = {
        frame for stack in stacks for frame in stack if "writer.py" in frame and frame.startswith("Writer._run_batch")
    }
    commit_lines = frozenset(frame for frame in batch_frames if _is_commit(frame, source))
    groups: Counter[str] = Counter()
    for stack, count in stacks.items():
        name = group_of(stack, commit_lines=commit_lines) if stack else None
        if name is not None:
            groups[name] += count
    total = sum(groups.values()) or 1
    unit = "" if not requests else "   µs/request"
    lines = [f"{total} samples (start-up imports left out)", "", f"  share{unit}  group"]
    for name, n in groups.most_common():
        per_request = "" if not requests else f"   {n / rate_hz / requests * 1e6:10.1f}"
        lines.append(f"{100 * n / total:6.1f}%{per_request}  {name}")
    if requests:
        lines.append(f"{total / rate_hz / requests * 1e6:17.1f}  in all (time on a thread's stack, not CPU)")
    return "\n".join(lines)


def _is_commit(frame: str, source: Path) -> bool:
    """Whether a ``Writer._run_batch`` frame is at its ``COMMIT`` line (read from the source, once per line)."""
    file, _ = _site(frame)
    match = _FRAME.match(frame)
    if match is None or match["line"] is None:
        return False
    try:
        text = (source / file).read_text().splitlines()[int(match["line"]) - 1]
    except (OSError, IndexError):
        return False
    return COMMIT_LINE.search(text) is not None


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profiles", description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--by-module", action="store_true", help="group self samples into the parts of a request")
    parser.add_argument("--requests", type=int, help="requests answered while recorded (for µs per request)")
    parser.add_argument("--rate", type=float, default=250.0, help="py-spy's sampling rate (Hz)")
    parser.add_argument(
        "--source", type=Path, default=SOURCE_ROOT, help="the directory holding the profiled scanq package"
    )
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    for path in args.files:
        print(f"== {path}")
        stacks = read_stacks(path)
        if args.by_module:
            print(by_module(stacks, requests=args.requests, rate_hz=args.rate, source=args.source))
        else:
            print(summarize(stacks, top=args.top))
        print()


if __name__ == "__main__":
    main()
