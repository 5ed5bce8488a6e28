"""NDJSON out: ``export_ndjson`` page by page, and the retention archive (gzip members, fsync, rotation, read back)."""

from __future__ import annotations

import gzip
import io
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from scanq.archive import ArchiveWriter, encode_lines, export_ndjson, parse_time, read_archive
from scanq.exceptions import ValidationError
from scanq.ids import new_scan_id
from scanq.models import Attempt, Finish, Lease, NewScan, Outcome, Scan, ScanStatus
from scanq.store.memory import MemoryStore


def finished_scan(n: int = 0) -> Scan:
    now = datetime(2025, 1, 31, 12, tzinfo=UTC) + timedelta(seconds=n)
    return Scan(
        scan_id=new_scan_id(),
        status=ScanStatus.COMPLETE,
        target="example.com",
        scanner="mock",
        options={"depth": n},
        priority=0,
        attempt=1,
        max_attempts=3,
        created_at=now,
        updated_at=now,
        available_at=now,
        started_at=now,
        finished_at=now,
        result={"n": n},
        history=(Attempt(attempt=1, worker="w", started_at=now, finished_at=now, outcome=Outcome.COMPLETE),),
    )


class Recording(io.BytesIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushed_at: list[int] = []

    def flush(self) -> None:
        self.flushed_at.append(len(self.getvalue().splitlines()))


class PagedStore(MemoryStore):
    """Records the limit of every export page asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.limits: list[int] = []

    async def export_scans(self, **kwargs: Any) -> list[Scan]:
        self.limits.append(kwargs["limit"])
        return await super().export_scans(**kwargs)


@pytest.fixture
async def store() -> AsyncIterator[PagedStore]:
    async with PagedStore(f"memory://{uuid.uuid4()}") as opened:
        yield opened


async def finish_all(store: MemoryStore, count: int) -> list[str]:
    news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)) for _ in range(count)]
    await store.create_many(scans=news)
    claimed = await store.claim(worker_id="w", limit=count, lease_s=30)
    await store.finish(
        finishes=[
            Finish(
                lease=Lease(scan_id=s.scan_id, worker_id="w", attempt=s.attempt), outcome=Outcome.COMPLETE, result={}
            )
            for s in claimed
        ]
    )
    return sorted(new.scan_id for new in news)


def test_each_scan_is_one_json_line_with_its_history_and_result() -> None:
    scan = finished_scan(3)

    (line,) = encode_lines([scan]).splitlines()
    decoded = msgspec.json.decode(line)

    assert decoded["scan_id"] == scan.scan_id
    assert decoded["result"] == {"n": 3} and decoded["options"] == {"depth": 3}
    assert decoded["history"][0]["outcome"] == "Complete"
    assert decoded["finished_at"] == "2025-01-31T12:00:03Z"


async def test_an_export_writes_page_by_page_in_key_order_and_resumes_from_its_cursor(store: PagedStore) -> None:
    ids = await finish_all(store, 7)
    out = Recording()

    done = await export_ndjson(store, out, page=3)
    rest = Recording()
    resumed = await export_ndjson(store, rest, after=ids[4], page=3)

    assert [msgspec.json.decode(line)["scan_id"] for line in out.getvalue().splitlines()] == ids
    assert (done.count, done.cursor) == (7, ids[-1])
    assert store.limits[:4] == [3, 3, 3, 3]  # one bounded page per call, the last one empty
    assert out.flushed_at == [3, 6, 7]  # written as each page came
    assert [msgspec.json.decode(line)["scan_id"] for line in rest.getvalue().splitlines()] == ids[5:]
    assert (resumed.count, resumed.cursor) == (2, ids[-1])


def test_batches_are_appended_as_gzip_members_and_read_back(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path / "archive", owner="host:12:ab/cd")
    first, second = [finished_scan(i) for i in range(3)], [finished_scan(i) for i in range(3, 5)]

    path_a = writer.write(first)
    path_b = writer.write(second)

    assert path_a == path_b and path_a.parent == tmp_path / "archive"
    assert path_a.name.endswith("-host-12-ab-cd-1.ndjson.gz")
    with gzip.open(path_a) as file:  # any gzip reader reads the members as one stream
        assert len(file.read().splitlines()) == 5
    assert [scan["scan_id"] for scan in read_archive(tmp_path / "archive")] == [s.scan_id for s in first + second]


def test_a_new_file_is_started_past_the_size_limit_and_by_every_new_writer(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, owner="w", max_bytes=1)
    paths = {writer.write([finished_scan(i)]) for i in range(3)}
    other = ArchiveWriter(tmp_path, owner="w").write([finished_scan(9)])

    assert len(paths) == 3
    assert other not in paths
    assert len(list(read_archive(tmp_path))) == 4


def test_a_batch_cut_short_is_skipped_when_reading(tmp_path: Path) -> None:
    writer = ArchiveWriter(tmp_path, owner="w")
    path = writer.write([finished_scan(0), finished_scan(1)])
    whole = gzip.compress(encode_lines([finished_scan(2), finished_scan(3)]))
    with path.open("ab") as file:
        file.write(whole[: len(whole) // 2])  # a crash in the middle of the next batch

    assert len(list(read_archive(path))) == 2


def test_a_write_that_cannot_be_made_durable_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = ArchiveWriter(tmp_path, owner="w")
    path = writer.write([finished_scan(0)])
    size = path.stat().st_size

    def failing_fsync(fd: int) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError, match="disk gone"):
        writer.write([finished_scan(1)])

    assert path.stat().st_size == size


def test_times_are_iso_8601_and_utc_unless_they_say_otherwise() -> None:
    assert parse_time("2025-01-31") == datetime(2025, 1, 31, tzinfo=UTC)
    assert parse_time("2025-01-31T12:00:00Z") == datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert parse_time("2025-01-31T14:00:00+02:00") == datetime(2025, 1, 31, 12, tzinfo=UTC)
    with pytest.raises(ValidationError):
        parse_time("yesterday")
