"""The PostgreSQL capped claim's first statement (``claim_untargeted``) and when it falls back to the windows.

The contract (``tests/contract/test_fairness.py``, ``test_capped_claims.py``) checks the cap and the claim
order on every backend; here, which statements the PostgreSQL store spends on them: one for a queue whose
head has no target, the windows only from the first scan with a target on, and none wasted on a queue
whose head has a target while that is remembered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from scanq.ids import new_scan_id
from scanq.models import NewScan, Scan
from scanq.store.postgres import PostgresStore, statements
from scanq.store.postgres.claims import TARGETED_HEAD_MEMORY_S, CappedClaims
from scanq.store.postgres.rows import CLAIMED_WIDTH, claimed_scan_from_row

LEASE_S = 30.0
CAP = 2
BUSY = "busy.example"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(postgres_database_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(postgres_database_url) as opened:
        yield opened


@pytest.fixture
def statements_run(store: PostgresStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The claim statements the store runs, in order: ``untargeted`` and ``window`` (lock_targets + claim_capped)."""
    seen: list[str] = []
    claims: CappedClaims = store._capped
    fetch = claims._fetch_untargeted
    window = claims._claim_window

    async def counted_fetch(*args: object) -> object:
        seen.append("untargeted")
        return await fetch(*args)  # type: ignore[arg-type]

    async def counted_window(*args: object) -> object:
        seen.append("window")
        return await window(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(claims, "_fetch_untargeted", counted_fetch)
    monkeypatch.setattr(claims, "_claim_window", counted_window)
    return seen


def scan(*, priority: int, target_key: str | None = None) -> NewScan:
    return NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC), priority=priority, target_key=target_key)


async def claim(store: PostgresStore, *, limit: int) -> list[Scan]:
    return await store.claim(worker_id="w1", limit=limit, lease_s=LEASE_S, max_per_target=CAP)


async def test_a_queue_without_targets_is_claimed_in_one_statement(
    store: PostgresStore, statements_run: list[str]
) -> None:
    news = [scan(priority=0) for _ in range(5)]
    await store.create_many(scans=news)

    first = await claim(store, limit=3)
    rest = await claim(store, limit=10)  # the window is not full: every claimable scan was seen

    assert [s.scan_id for s in first + rest] == [new.scan_id for new in news]
    assert statements_run == ["untargeted", "untargeted"]


async def test_the_run_before_the_first_target_then_the_windows_keep_order_and_cap(
    store: PostgresStore, statements_run: list[str]
) -> None:
    head = [scan(priority=9) for _ in range(3)]
    busy = [scan(priority=5, target_key=BUSY) for _ in range(4)]
    tail = [scan(priority=1) for _ in range(2)]
    await store.create_many(scans=[*tail, *busy, *head])

    claimed = await claim(store, limit=10)

    # Claim order, the busy target held to its cap; its other scans stay Accepted.
    assert [s.scan_id for s in claimed] == [s.scan_id for s in [*head, *busy[:CAP], *tail]]
    assert statements_run[0] == "untargeted" and "window" in statements_run[1:]
    assert [s.history[0].worker for s in claimed] == ["w1"] * len(claimed)


async def test_a_targeted_head_is_remembered_for_a_while(store: PostgresStore, statements_run: list[str]) -> None:
    clock = Clock()
    store._capped._clock = clock
    await store.create_many(scans=[scan(priority=5, target_key=BUSY) for _ in range(6)])

    assert len(await claim(store, limit=1)) == 1  # the head has a target: nothing by the first statement
    assert statements_run == ["untargeted", "window"]
    clock.now += TARGETED_HEAD_MEMORY_S / 2
    assert len(await claim(store, limit=1)) == 1
    assert statements_run[2:] == ["window"]  # straight to the windows
    clock.now += TARGETED_HEAD_MEMORY_S
    assert await claim(store, limit=1) == []  # the target is full (cap 2)
    assert statements_run[3:] == ["untargeted", "window"]


async def test_the_first_statement_never_claims_a_scan_with_a_target(store: PostgresStore) -> None:
    """Straight SQL: claim_untargeted stops at the first scan with a target, whatever follows it."""
    await store.create_many(scans=[scan(priority=9), scan(priority=5, target_key=BUSY), scan(priority=1)])
    rows = await store._capped._fetch_untargeted("w1", 10, LEASE_S)

    assert (rows[0]["walked"], rows[0]["led"]) == (3, 1)
    assert [row["target_key"] for row in rows if row["scan_id"] is not None] == [None]
    assert statements.CLAIM_UNTARGETED.count("FOR UPDATE SKIP LOCKED") == 1


async def test_a_claim_returns_every_column_of_the_table(store: PostgresStore, postgres_database_url: str) -> None:
    """CLAIMED_COLUMNS is spelled out (for its history): a column a migration adds must be added there too."""
    await store.create(scan=scan(priority=0))
    [row] = await store._capped._fetch_untargeted("w1", 1, LEASE_S)
    table = await store._fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_name = 'scans' AND table_schema = current_schema()"
    )
    columns = {column["column_name"] for column in table}
    assert {"scan_id", "history", "fair_key"} <= columns
    assert columns <= set(row.keys())


async def test_every_claim_statement_answers_the_claimed_columns_first(store: PostgresStore) -> None:
    """rows.claimed_scan_from_row and claim_order read a claimed row by position: CLAIMED_COLUMNS, in order, first."""
    names = [column.strip().split(" ")[-1].removeprefix("s.") for column in statements.CLAIMED_COLUMNS.split(",")]
    assert len(names) == CLAIMED_WIDTH
    assert (names[0], names[5], names[24], names[-1]) == ("scan_id", "priority", "fair_key", "history")
    await store.create(scan=scan(priority=0))
    await store.create(scan=scan(priority=0))
    await store.create(scan=scan(priority=0, target_key=BUSY))
    plain = await store._fetch(statements.CLAIM, "w1", 1, LEASE_S)
    untargeted = await store._capped._fetch_untargeted("w1", 1, LEASE_S)
    capped = await store._capped._claim_window("w1", 1, LEASE_S, CAP, 4)
    for rows in (plain, untargeted, capped):
        assert rows[0]["scan_id"] is not None
        assert list(rows[0].keys())[:CLAIMED_WIDTH] == names
    claimed = [claimed_scan_from_row(rows[0]) for rows in (plain, untargeted, capped)]
    assert [found.target_key for found in claimed] == [None, None, BUSY]
    assert {found.attempt for found in claimed} == {1}
    assert all(found.history[0].worker == "w1" and found.lease_owner == "w1" for found in claimed)
