"""``GET /stats/throughput`` on the status service, in-process, over the memory store and SQLite.

Scans are finished through the store (its own clock stamps ``finished_at``);
each must be counted once, under its status, in the step its ``finished_at``
falls in, and every step of the window must be present.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scanq.models import Finish, Lease, Outcome
from tests.integration.apps import Services, services

pytestmark = pytest.mark.parametrize("database_url", ["memory", "sqlite"], indirect=True)

FINISHED = ("Complete", "Error", "Cancelled")


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Services]:
    async with services(database_url) as s:
        yield s


def parse_time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


async def throughput(api: Services, query: str = "") -> dict[str, Any]:
    response = await api.status.get(f"/stats/throughput{query}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def check_shape(body: dict[str, Any], *, steps: int, step_s: float) -> None:
    """Every step present, oldest first, on whole multiples of the step, the last one holding now."""
    since, until = parse_time(body["since"]), parse_time(body["until"])
    assert body["step_s"] == step_s
    assert len(body["buckets"]) == steps
    assert until - since == timedelta(seconds=steps * step_s)
    assert since.timestamp() % step_s == 0
    starts = [parse_time(b["start"]) for b in body["buckets"]]
    assert starts == [since + timedelta(seconds=i * step_s) for i in range(steps)]
    assert starts[-1] <= datetime.now(UTC) < until + timedelta(seconds=step_s)  # a step may pass meanwhile
    for bucket in body["buckets"]:
        assert set(bucket["counts"]) == set(FINISHED)
        assert bucket["total"] == sum(bucket["counts"].values())


async def queue(api: Services, count: int) -> list[str]:
    response = await api.ingest.post("/scans/batch", json={"scans": [{"target": f"t{i}"} for i in range(count)]})
    assert response.status_code == 202
    return [s["scan_id"] for s in response.json()["scans"]]


async def finish(api: Services, outcomes: list[Outcome]) -> None:
    """Claim ``len(outcomes)`` scans and finish them with these outcomes."""
    claimed = await api.store.claim(worker_id="w", limit=len(outcomes), lease_s=60)
    assert len(claimed) == len(outcomes)
    finishes = [
        Finish(
            lease=Lease(scan_id=scan.scan_id, worker_id="w", attempt=scan.attempt),
            outcome=outcome,
            result={} if outcome is Outcome.COMPLETE else None,
            error="boom" if outcome is Outcome.ERROR else None,
            retry_at=datetime.now(UTC) + timedelta(hours=1) if outcome is Outcome.RETRY else None,
        )
        for scan, outcome in zip(claimed, outcomes, strict=True)
    ]
    assert await api.store.finish(finishes=finishes) == [True] * len(outcomes)


async def next_whole_second() -> None:
    await asyncio.sleep(1.02 - time.time() % 1)


async def test_each_finished_scan_is_counted_once_under_its_status_in_the_step_of_its_finished_at(
    api: Services,
) -> None:
    ids = await queue(api, 9)
    await finish(api, [Outcome.COMPLETE, Outcome.COMPLETE, Outcome.ERROR])
    await next_whole_second()  # the next finishes land in a later one-second step
    await finish(api, [Outcome.COMPLETE, Outcome.CANCELLED, Outcome.RETRY])
    await api.store.claim(worker_id="w", limit=1, lease_s=60)  # one Running, never counted
    cancelled = await api.ingest.post(f"/scans/{ids[-1]}/cancel")  # Accepted → Cancelled at once
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "Cancelled"

    body = await throughput(api, "?window=60s&step=1s")

    check_shape(body, steps=60, step_s=1.0)
    since = parse_time(body["since"])
    expected: Counter[tuple[int, str]] = Counter()
    for scan_id in ids:
        scan = (await api.status.get(f"/scans/{scan_id}")).json()
        if scan["status"] in FINISHED:
            index = int((parse_time(scan["finished_at"]) - since).total_seconds() // 1)
            expected[(index, scan["status"])] += 1
    assert sum(expected.values()) == 6  # 3 Complete, 1 Error, 2 Cancelled; the Retry is Accepted again
    assert len({index for index, _ in expected}) >= 2  # the history spans more than one step
    found = Counter({(i, status): n for i, b in enumerate(body["buckets"]) for status, n in b["counts"].items() if n})
    assert found == expected


async def test_the_default_is_five_minutes_in_ten_second_steps(api: Services) -> None:
    await queue(api, 2)
    await finish(api, [Outcome.COMPLETE, Outcome.ERROR])

    body = await throughput(api)

    check_shape(body, steps=30, step_s=10.0)
    totals = Counter({s: sum(b["counts"][s] for b in body["buckets"]) for s in FINISHED})
    assert totals == Counter({"Complete": 1, "Error": 1})


async def test_an_empty_store_answers_every_step_at_zero(api: Services) -> None:
    body = await throughput(api, "?window=1h&step=1m")

    check_shape(body, steps=60, step_s=60.0)
    assert all(b["total"] == 0 for b in body["buckets"])


@pytest.mark.parametrize(
    ("query", "steps", "step_s"),
    [
        ("?window=65s&step=10s", 7, 10.0),  # rounded up to whole steps
        ("?window=90&step=30", 3, 30.0),  # bare numbers are seconds
        ("?window=24h&step=100s", 864, 100.0),  # the longest window
        ("?window=1000s&step=1s", 1000, 1.0),  # the most steps
        ("?window=5s&step=1m", 1, 60.0),  # a window shorter than a step is one step
        ("?window=&step=", 30, 10.0),  # empty is the default
    ],
)
async def test_windows_and_steps_in_bounds(api: Services, query: str, steps: int, step_s: float) -> None:
    check_shape(await throughput(api, query), steps=steps, step_s=step_s)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?window=25h", "window must be more than 0s and at most 86400s"),
        ("?window=86401s&step=1h", "window must be more than 0s and at most 86400s"),
        ("?window=0", "window must be more than 0s"),
        ("?step=0s", "step must be at least 1s"),
        ("?window=1001s&step=1s", "1001 steps; at most 1000"),
        ("?window=24h&step=1s", "86400 steps; at most 1000"),
        ("?step=500ms", "step must be a whole number of seconds"),
        ("?window=1d", "window must be a whole number of seconds"),
        ("?window=-5m", "window must be a whole number"),
        ("?window=1.5h", "window must be a whole number"),
        ("?window=abc", "window must be a whole number"),
        ("?window=99999999999999999999", "window must be a whole number"),
    ],
)
async def test_out_of_bounds_or_malformed_answers_422_saying_why(api: Services, query: str, message: str) -> None:
    response = await api.status.get(f"/stats/throughput{query}")

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert message in error["message"]


async def test_the_route_is_documented_with_its_parameters_and_bounds(api: Services) -> None:
    doc = (await api.status.get("/openapi.json")).json()

    operation = doc["paths"]["/stats/throughput"]["get"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert set(params) == {"window", "step", "tenant"}
    assert params["window"]["schema"]["default"] == "5m" and params["step"]["schema"]["default"] == "10s"
    assert {"200", "422", "503"} <= set(operation["responses"])
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/ThroughputResponse"}
    components = doc["components"]["schemas"]
    assert set(components["ThroughputResponse"]["properties"]) == {"since", "until", "step_s", "buckets"}
    assert set(components["FinishedCounts"]["properties"]) == set(FINISHED)
