"""Finishing an attempt: at most once, many outcomes in one call, retries, and the history it leaves.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import timedelta

from scanq.models import Finish, Outcome, ScanStatus
from scanq.store import Store
from tests.contract.helpers import LONG_LEASE_S, claim_one, lease_of, new_scan, now_ms


async def test_a_scan_is_finished_at_most_once(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)
    done = Finish(lease=lease_of(scan), outcome=Outcome.COMPLETE, result={"n": 1})
    failed = Finish(lease=lease_of(scan), outcome=Outcome.ERROR, error="late")

    assert await store.finish(finishes=[done]) == [True]
    assert await store.finish(finishes=[failed]) == [False]
    assert await store.finish(finishes=[done]) == [False]
    stored = await store.get(scan_id=scan.scan_id)
    assert (stored.status, stored.result, stored.error) == (ScanStatus.COMPLETE, {"n": 1}, None)
    assert len(stored.history) == 1


async def test_one_finish_call_applies_many_outcomes(store: Store) -> None:
    await store.create_many(scans=[new_scan() for _ in range(4)])
    a, b, c, d = await store.claim(worker_id="w1", limit=4, lease_s=LONG_LEASE_S)
    stale = dataclasses.replace(lease_of(d), worker_id="someone-else")

    applied = await store.finish(
        finishes=[
            Finish(lease=lease_of(a), outcome=Outcome.COMPLETE, result={"open_ports": [22]}),
            Finish(lease=lease_of(b), outcome=Outcome.ERROR, error="boom"),
            Finish(lease=lease_of(c), outcome=Outcome.CANCELLED),
            Finish(lease=stale, outcome=Outcome.COMPLETE, result={}),
        ]
    )

    assert applied == [True, True, True, False]
    statuses = [(await store.get(scan_id=s.scan_id)).status for s in (a, b, c, d)]
    assert statuses == [ScanStatus.COMPLETE, ScanStatus.ERROR, ScanStatus.CANCELLED, ScanStatus.RUNNING]


async def test_retry_returns_the_scan_to_accepted_at_retry_at(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store)
    retry_at = now_ms() + timedelta(minutes=5)

    applied = await store.finish(
        finishes=[Finish(lease=lease_of(scan), outcome=Outcome.RETRY, error="timeout", retry_at=retry_at)]
    )
    waiting = await store.get(scan_id=scan.scan_id)

    assert applied == [True]
    assert (waiting.status, waiting.attempt, waiting.lease_owner, waiting.finished_at) == (
        ScanStatus.ACCEPTED,
        1,
        None,
        None,
    )
    assert waiting.available_at == retry_at
    assert (waiting.history[0].outcome, waiting.history[0].error) == (Outcome.RETRY, "timeout")
    assert await store.claim(worker_id="w1", limit=1, lease_s=LONG_LEASE_S) == []


async def test_a_due_retry_is_claimed_as_the_next_attempt(store: Store) -> None:
    await store.create(scan=new_scan())
    scan = await claim_one(store, worker_id="w1")
    await store.finish(finishes=[Finish(lease=lease_of(scan), outcome=Outcome.RETRY, error="flaky", retry_at=now_ms())])

    again = await claim_one(store, worker_id="w2")
    await store.finish(finishes=[Finish(lease=lease_of(again), outcome=Outcome.COMPLETE, result={"ok": True})])
    final = await store.get(scan_id=scan.scan_id)

    assert again.attempt == 2
    assert (final.status, final.attempt, final.result) == (ScanStatus.COMPLETE, 2, {"ok": True})
    assert [(e.attempt, e.worker, e.outcome, e.error) for e in final.history] == [
        (1, "w1", Outcome.RETRY, "flaky"),
        (2, "w2", Outcome.COMPLETE, None),
    ]


async def test_a_retry_is_never_claimable_before_its_predecessor_finished(store: Store) -> None:
    # The worker sets retry_at by its own clock, which may lag the store's (and a full-jitter backoff
    # may be ~0): the store makes the retry due no earlier than its own now at the finish.
    await store.create(scan=new_scan(max_attempts=3))
    first = await claim_one(store, worker_id="w1")
    lagging = now_ms() - timedelta(seconds=1)
    await store.finish(finishes=[Finish(lease=lease_of(first), outcome=Outcome.RETRY, error="a", retry_at=lagging)])
    waiting = await store.get(scan_id=first.scan_id)
    second = await claim_one(store, worker_id="w1")
    lagging = now_ms() - timedelta(seconds=1)
    await store.finish(finishes=[Finish(lease=lease_of(second), outcome=Outcome.RETRY, error="b", retry_at=lagging)])
    third = await claim_one(store, worker_id="w1")
    await store.finish(finishes=[Finish(lease=lease_of(third), outcome=Outcome.COMPLETE, result={})])
    final = await store.get(scan_id=first.scan_id)

    assert waiting.history[0].finished_at is not None
    assert waiting.available_at == waiting.history[0].finished_at
    assert [(e.attempt, e.outcome) for e in final.history] == [
        (1, Outcome.RETRY),
        (2, Outcome.RETRY),
        (3, Outcome.COMPLETE),
    ]
    for before, after in itertools.pairwise(final.history):
        assert before.finished_at is not None and after.started_at >= before.finished_at, (before, after)


async def test_history_records_worker_times_outcome_and_error(store: Store) -> None:
    await store.create_many(scans=[new_scan(), new_scan()])
    ok, bad = await store.claim(worker_id="w7", limit=2, lease_s=LONG_LEASE_S)

    await store.finish(
        finishes=[
            Finish(lease=lease_of(ok), outcome=Outcome.COMPLETE, result={"grade": "A"}),
            Finish(lease=lease_of(bad), outcome=Outcome.ERROR, error="connection refused"),
        ]
    )
    done = await store.get(scan_id=ok.scan_id)
    failed = await store.get(scan_id=bad.scan_id)

    assert (done.status, done.result, done.error) == (ScanStatus.COMPLETE, {"grade": "A"}, None)
    assert (failed.status, failed.result, failed.error) == (ScanStatus.ERROR, None, "connection refused")
    for scan, outcome, error in ((done, Outcome.COMPLETE, None), (failed, Outcome.ERROR, "connection refused")):
        assert scan.lease_owner is None and scan.lease_expires_at is None
        assert scan.finished_at is not None and scan.started_at is not None
        assert scan.finished_at >= scan.started_at
        (entry,) = scan.history
        assert (entry.attempt, entry.worker, entry.outcome, entry.error) == (1, "w7", outcome, error)
        assert entry.started_at == scan.started_at
        assert entry.finished_at == scan.finished_at
