"""SharedReads: one read per key at a time, its answer shared, its failure not kept."""

from __future__ import annotations

import asyncio

import pytest

from scanq.exceptions import StoreUnavailable
from scanq.shared_reads import SharedReads


class GatedSource:
    """A read source holding every read until ``gate`` is set (then failing it with ``failure``, if set)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.failure: Exception | None = None
        self.reads: list[str] = []

    async def fetch(self, key: str) -> str:
        self.reads.append(key)
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return f"value of {key}"


@pytest.fixture
def source() -> GatedSource:
    return GatedSource()


async def test_callers_asking_together_share_one_read_and_its_answer(source: GatedSource) -> None:
    kept: list[tuple[str, str]] = []
    reads: SharedReads[str, str] = SharedReads(lambda key, value: kept.append((key, value)))
    waiting = [asyncio.create_task(reads.read("a", lambda: source.fetch("a"))) for _ in range(20)]
    other = asyncio.create_task(reads.read("b", lambda: source.fetch("b")))
    await asyncio.sleep(0)
    source.gate.set()

    assert await asyncio.gather(*waiting) == ["value of a"] * 20
    assert await other == "value of b"
    assert sorted(source.reads) == ["a", "b"]  # one read per key, not per caller
    assert sorted(kept) == [("a", "value of a"), ("b", "value of b")]  # each answer handed over once


async def test_a_read_that_ended_is_not_reused(source: GatedSource) -> None:
    reads: SharedReads[str, str] = SharedReads(lambda key, value: None)
    source.gate.set()
    await reads.read("a", lambda: source.fetch("a"))
    await reads.read("a", lambda: source.fetch("a"))
    assert source.reads == ["a", "a"]  # caching is the owner's job: an ended read is forgotten


async def test_a_caller_that_goes_away_does_not_cancel_the_others_read(source: GatedSource) -> None:
    kept: list[tuple[str, str]] = []
    reads: SharedReads[str, str] = SharedReads(lambda key, value: kept.append((key, value)))
    first, second = (asyncio.create_task(reads.read("a", lambda: source.fetch("a"))) for _ in range(2))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    source.gate.set()

    assert await second == "value of a"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert source.reads == ["a"]
    assert kept == [("a", "value of a")]


async def test_a_failed_read_fails_each_waiter_and_is_neither_kept_nor_reused(source: GatedSource) -> None:
    kept: list[tuple[str, str]] = []
    reads: SharedReads[str, str] = SharedReads(lambda key, value: kept.append((key, value)))
    source.failure = StoreUnavailable("down")
    waiting = [asyncio.create_task(reads.read("a", lambda: source.fetch("a"))) for _ in range(3)]
    await asyncio.sleep(0)
    source.gate.set()

    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(result, StoreUnavailable) for result in results)
    assert kept == []

    source.failure = None
    assert await reads.read("a", lambda: source.fetch("a")) == "value of a"  # read again, not the failure
    assert source.reads == ["a", "a"]
    assert kept == [("a", "value of a")]
