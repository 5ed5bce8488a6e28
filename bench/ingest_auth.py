"""Scenario ``ingest-auth``: what an API token costs a single submission, as a ratio in one run.

Two ingest processes, each on a fresh database of its own: one with
authentication off (loopback, as ``./run``), one with ``SCANQ_AUTH=tokens``
and every request carrying a valid token. The same load (``POST /scans`` with
one scan) runs against each in turn, alternating which goes first, ``ROUNDS``
times; the figure that counts is the median of
the token rates over the median of the rates without. A token check reads the
store at most once per 0.5 s per process (``scanq.auth``), so the cost is the
header parse, one SHA-256 and a dict lookup per request.
"""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.context import BenchContext, fmt_rate
from bench.databases import fresh_database
from bench.processes import run_loadgen, start_scanq, stop_all, wait_http_ready
from scanq.auth import new_token
from scanq.models import Scope
from scanq.store import open_store

CONCURRENCY = 64
ROUNDS = 4
BODY = json.dumps({"target": "example.com", "scanner": "noop"}).encode()
# The promise of issue 12: tokens cost at most 10% of the throughput without them.
MAX_COST = 0.10


async def run(ctx: BenchContext) -> dict[str, Any]:
    """Alternate loads without and with a token; return both rates and their ratio."""
    duration_s: float = ctx.pick(8.0, 1.0)
    warmup_s: float = ctx.pick(1.5, 0.3)
    concurrency: int = ctx.pick(CONCURRENCY, 16)
    rounds: int = ctx.pick(ROUNDS, 1)
    rates: dict[str, list[float]] = {"off": [], "tokens": []}
    # CPU the ingest process spent per request (warm-up included on both sides): hardly moved by other load.
    cpu_us: dict[str, list[float]] = {"off": [], "tokens": []}
    # One database per mode: round i of each runs against a table of the same size (a shared table would
    # always be bigger for the mode measured second).
    async with (
        fresh_database(ctx.db, label="ingest_auth_off", workdir=ctx.workdir) as off_url,
        fresh_database(ctx.db, label="ingest_auth_tokens", workdir=ctx.workdir) as tokens_url,
    ):
        secret, token = new_token(tenant="bench", scopes=frozenset({Scope.SUBMIT}), name="bench")
        async with open_store(tokens_url) as store:
            await store.create_token(token=token)
        services = {
            "off": start_scanq("ingest", database_url=off_url, log_dir=ctx.log_dir),
            "tokens": start_scanq("ingest", database_url=tokens_url, log_dir=ctx.log_dir, settings={"auth": "tokens"}),
        }
        headers = {"off": (), "tokens": (f"Authorization: Bearer {secret}",)}
        try:
            for service in services.values():
                await wait_http_ready(service)
            for round_ in range(rounds):
                # Alternate which mode goes first, so neither always follows the other.
                order = list(services.items()) if round_ % 2 == 0 else list(reversed(services.items()))
                for mode, service in order:
                    assert service.port is not None
                    cpu_before = service.cpu_seconds()
                    result = await run_loadgen(
                        port=service.port,
                        method="POST",
                        paths=["/scans"],
                        body=BODY,
                        concurrency=concurrency,
                        duration_s=duration_s,
                        warmup_s=warmup_s,
                        workdir=ctx.workdir,
                        headers=headers[mode],
                    )
                    statuses: dict[str, int] = result["statuses"]  # type: ignore[assignment]
                    accepted = sum(n for status, n in statuses.items() if status.startswith("2"))
                    if accepted != sum(statuses.values()):
                        raise RuntimeError(f"{mode}: not every submission was accepted: {statuses}")
                    rates[mode].append(round(accepted / float(result["duration_s"]), 1))  # type: ignore[arg-type]
                    # Per measured request; the warm-up's CPU is in it too, the same share on both sides.
                    measured = int(result["requests"]) or 1  # type: ignore[call-overload]
                    cpu_us[mode].append(round((service.cpu_seconds() - cpu_before) / measured * 1e6, 1))
        finally:
            await stop_all(list(services.values()))
    off, tokens = statistics.median(rates["off"]), statistics.median(rates["tokens"])
    ratio = tokens / off if off else 0.0
    cpu_off, cpu_tokens = statistics.median(cpu_us["off"]), statistics.median(cpu_us["tokens"])
    cpu_ratio = cpu_off / cpu_tokens if cpu_tokens else 0.0
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "rounds": rounds,
        "rates_off": rates["off"],
        "rates_tokens": rates["tokens"],
        "tokens_vs_off": round(ratio, 3),
        "cpu_us_off": cpu_us["off"],
        "cpu_us_tokens": cpu_us["tokens"],
        "cpu_tokens_vs_off": round(cpu_ratio, 3),
        "is_within_cost": ratio >= 1 - MAX_COST,
        "table": [
            ["POST /scans, auth off (median scans/s)", f"{fmt_rate(off)} of {rates['off']}"],
            ["POST /scans, with a token (median scans/s)", f"{fmt_rate(tokens)} of {rates['tokens']}"],
            ["with token / without", f"{ratio:.1%} (at least {1 - MAX_COST:.0%} wanted)"],
            ["ingest CPU per request, auth off (median µs)", f"{cpu_off:.1f} of {cpu_us['off']}"],
            ["ingest CPU per request, with a token (median µs)", f"{cpu_tokens:.1f} of {cpu_us['tokens']}"],
            ["requests per CPU-second, with token / without", f"{cpu_ratio:.1%}"],
        ],
    }
