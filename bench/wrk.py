"""wrk as a second judge of the ingest and status scenarios: ``wrk -t1 -c64 -s post.lua`` (or ``get.lua``).

``bench.loadgen`` measures every scenario; wrk (C, one thread here) confirms
the ingest figures and the status scenario's 64-client reads with a client
scanq did not write. ``scripts/ensure-wrk.sh`` installs it with apt when the
bench runs as root; without it the result says why (``{"available": False,
"reason": …}``) and the bench goes on. ``post_script`` sends one body with
``Content-Type: application/json``; ``get_script`` asks for a list of paths in
turn. Both print their summary as one JSON line from wrk's ``done`` hook
(requests, errors, latency percentiles), so nothing depends on wrk's
human-readable output.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.processes import REPO_ROOT

ENSURE_SCRIPT = REPO_ROOT / "scripts" / "ensure-wrk.sh"
ENSURE_TIMEOUT_S = 300.0
THREADS = 1
# wrk's own socket/read timeout; a request slower than this counts as a timeout error, not a latency.
TIMEOUT_S = 10

_DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRK_JSON {"requests": %d, "duration_us": %d, "status_errors": %d, "connect_errors": %d, '
    .. '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
    .. '"max_us": %d}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def ensure_wrk(*, may_install: bool) -> str | None:
    """The path of ``wrk``, installing it first when allowed (root, apt); None when it cannot be had."""
    if shutil.which("wrk") is None and may_install and ENSURE_SCRIPT.exists():
        try:
            subprocess.run(["bash", str(ENSURE_SCRIPT)], timeout=ENSURE_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired):
            pass
    return shutil.which("wrk")


def post_script(*, body: bytes, workdir: Path) -> Path:
    """A Lua script that POSTs ``body`` as JSON on every request and prints a JSON summary."""
    text = body.decode()
    if "]]" in text:
        raise ValueError("the body cannot go into a Lua long string")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"post-{int(time.time() * 1e6)}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = [[{text}]]", 'wrk.headers["Content-Type"] = "application/json"']
    path.write_text("\n".join(lines) + "\n" + _DONE_HOOK)
    return path


def get_script(*, paths: Sequence[str], workdir: Path) -> Path:
    """A Lua script that GETs ``paths`` in turn, one per request, and prints a JSON summary.

    The paths go into Lua string literals: printable ASCII without quotes or backslashes only (ids, query
    strings and base64url cursors are).
    """
    if not paths:
        raise ValueError("no paths to GET")
    for path in paths:
        if not path.isascii() or not path.isprintable() or '"' in path or "\\" in path:
            raise ValueError(f"this path cannot go into a Lua string: {path!r}")
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / f"get-{int(time.time() * 1e6)}.lua"
    table = ",\n".join(f'  "{path}"' for path in paths)
    lines = [
        f"local paths = {{\n{table}\n}}",
        "local next_path = 0",
        "request = function()",
        "  next_path = next_path % #paths + 1",
        '  return wrk.format("GET", paths[next_path])',
        "end",
    ]
    script.write_text("\n".join(lines) + "\n" + _DONE_HOOK)
    return script


async def run_wrk(
    wrk: str, *, port: int, path: str, script: Path, connections: int, duration_s: float
) -> dict[str, Any]:
    """One ``wrk -t1 -cN -dS -s script`` run against 127.0.0.1:``port``; rates and latencies in ms."""
    argv = [wrk, f"-t{THREADS}", f"-c{connections}", f"-d{max(1, round(duration_s))}s", f"--timeout={TIMEOUT_S}s"]
    argv += ["-s", str(script), f"http://127.0.0.1:{port}{path}"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT
    )
    stdout, stderr = await proc.communicate()
    text = stdout.decode(errors="replace")
    found = [line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("WRK_JSON ")]
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {text[-1000:]} {stderr.decode(errors='replace')[-1000:]}")
    raw: dict[str, int] = json.loads(found[-1])
    duration = raw["duration_us"] / 1e6
    errors = sum(raw[key] for key in ("status_errors", "connect_errors", "read_errors", "write_errors", "timeouts"))
    ok = raw["requests"] - raw["status_errors"]
    return {
        "command": " ".join(["wrk", *argv[1:-3], "-s", script.name.split("-")[0] + ".lua", argv[-1]]),
        "requests": raw["requests"],
        "errors": errors,
        "duration_s": round(duration, 3),
        "rate_per_s": round(raw["requests"] / duration, 1) if duration else 0.0,
        "ok_per_s": round(ok / duration, 1) if duration else 0.0,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "raw": raw,
    }
