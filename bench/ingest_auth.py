"""Scenario ``ingest-auth``: what an API token costs a single submission, as a ratio in one run.

Two ingest processes on one store: one with authentication off (loopback, as
``./run``), one with ``SCANQ_AUTH=tokens`` and every request carrying a valid
token. The same load (``POST /scans`` with one scan) runs against each in
turn, alternating, ``ROUNDS`` times; the figure that counts is the median of
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
ROUNDS = 3
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
    async with fresh_database(ctx.db, label="ingest_auth", workdir=ctx.workdir) as url:
        secret, token = new_token(tenant="bench", scopes=frozenset({Scope.SUBMIT}), name="bench")
        async with open_store(url) as store:
            await store.create_token(token=token)
        services = {
            "off": start_scanq("ingest", database_url=url, log_dir=ctx.log_dir),
            "tokens": start_scanq("ingest", database_url=url, log_dir=ctx.log_dir, settings={"auth": "tokens"}),
        }
        headers = {"off": (), "tokens": (f"Authorization: Bearer {secret}",)}
        try:
            for service in services.values():
                await wait_http_ready(service)
            for _ in range(rounds):
                for mode, service in services.items():
                    assert service.port is not None
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
        finally:
            await stop_all(list(services.values()))
    off, tokens = statistics.median(rates["off"]), statistics.median(rates["tokens"])
    ratio = tokens / off if off else 0.0
    return {
        "concurrency": concurrency,
        "duration_s": duration_s,
        "rounds": rounds,
        "rates_off": rates["off"],
        "rates_tokens": rates["tokens"],
        "tokens_vs_off": round(ratio, 3),
        "is_within_cost": ratio >= 1 - MAX_COST,
        "table": [
            ["POST /scans, auth off (median scans/s)", f"{fmt_rate(off)} of {rates['off']}"],
            ["POST /scans, with a token (median scans/s)", f"{fmt_rate(tokens)} of {rates['tokens']}"],
            ["with token / without", f"{ratio:.1%} (at least {1 - MAX_COST:.0%} wanted)"],
        ],
    }
