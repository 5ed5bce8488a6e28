"""``Running``: the task reports how its attempt ended exactly once, however and whenever it ends.

The task reports from its own body (no done callback per scan); a stop adds the done callback that
covers a task cancelled before its first step, whose body never runs.
"""

from __future__ import annotations

import asyncio
import gc
import warnings
from datetime import UTC, datetime

from scanq.models import Finish, Lease, Outcome, Scan, ScanStatus
from scanq.worker.running import Running, StopReason

LEASE = Lease(scan_id="s1", worker_id="w1", attempt=1)
SCAN = Scan(
    scan_id="s1",
    status=ScanStatus.RUNNING,
    target=None,
    scanner="noop",
    options={},
    priority=0,
    attempt=1,
    max_attempts=3,
    created_at=datetime.now(UTC),
    updated_at=datetime.now(UTC),
    available_at=datetime.now(UTC),
)
DONE = Finish(lease=LEASE, outcome=Outcome.COMPLETE, result={})


class Ends:
    """What ``end`` was told, in order (and it marks the run ended, as the worker's ``_on_done`` does)."""

    def __init__(self) -> None:
        self.seen: list[Finish | None] = []

    def __call__(self, run: Running, finish: Finish | None) -> None:
        if run.is_ended:
            return
        run.is_ended = True
        self.seen.append(finish)


def start(attempt: object, ends: Ends) -> Running:
    run = Running(SCAN, LEASE, 0.0, ends, attempt)  # type: ignore[arg-type]
    run.task = asyncio.get_running_loop().create_task(run.run())
    return run


async def finished() -> Finish:
    return DONE


async def forever() -> Finish:
    await asyncio.Event().wait()
    raise AssertionError("never set")


async def test_an_attempt_that_ends_reports_its_finish_once() -> None:
    ends = Ends()
    run = start(finished(), ends)
    await asyncio.wait([run.task])
    run.stop(StopReason.TIMED_OUT)  # after its end: nothing more to report
    await asyncio.sleep(0)
    assert ends.seen == [DONE]


async def test_a_stopped_attempt_reports_none_once() -> None:
    ends = Ends()
    run = start(forever(), ends)
    await asyncio.sleep(0)  # its first step: waiting
    run.stop(StopReason.CANCEL_REQUESTED)
    await asyncio.wait([run.task])
    await asyncio.sleep(0)  # the stop's done callback has run too
    assert run.task.cancelled()
    assert ends.seen == [None]


async def test_an_attempt_stopped_before_its_first_step_reports_none_and_is_closed() -> None:
    ends = Ends()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be a RuntimeWarning
        run = start(finished(), ends)
        run.stop(StopReason.LEASE_LOST)
        await asyncio.wait([run.task])
        await asyncio.sleep(0)
        assert run.task.cancelled()
        assert ends.seen == [None]
        assert run.attempt.cr_frame is None  # type: ignore[attr-defined]  # closed, never run
        gc.collect()


async def test_a_base_exception_that_is_not_an_exception_becomes_an_error_finish() -> None:
    class Stopped(BaseException):
        pass

    async def raises() -> Finish:
        raise Stopped("odd")

    ends = Ends()
    run = start(raises(), ends)
    await asyncio.wait([run.task])
    assert run.task.exception() is None  # handled: nothing left unretrieved
    [finish] = ends.seen
    assert finish is not None
    assert (finish.outcome, finish.error, finish.lease) == (Outcome.ERROR, "Stopped: odd", LEASE)
