"""``scanq prune`` and ``scanq export`` through click, on a MemoryStore shared by URL within the process."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from click.testing import CliRunner, Result

from scanq.cli import cli
from scanq.ids import new_scan_id
from scanq.models import Finish, Lease, NewScan, Outcome, ScanStatus
from scanq.store.base import RETENTION_ROLE
from scanq.store.memory import MemoryStore

AN_HOUR_AGO = datetime.now(UTC) - timedelta(hours=1)


def finished_store(complete: int, error: int, *, finished_at: datetime = AN_HOUR_AGO) -> str:
    """A memory:// URL holding finished scans whose ``finished_at`` is ``finished_at``; the ids in key order."""
    url = f"memory://{uuid.uuid4()}"

    async def fill() -> None:
        async with MemoryStore(url) as store:
            for outcome, count in ((Outcome.COMPLETE, complete), (Outcome.ERROR, error)):
                news = [NewScan(scan_id=new_scan_id(), created_at=datetime.now(UTC)) for _ in range(count)]
                await store.create_many(scans=news)
                leases = [Lease(scan_id=new.scan_id, worker_id="w", attempt=1) for new in news]
                await store.claim(worker_id="w", limit=count, lease_s=30)
                await store.finish(
                    finishes=[Finish(lease=lease, outcome=outcome, result={}, error="x") for lease in leases]
                )
            for scan_id, scan in list(store._scans.items()):
                store._scans[scan_id] = dataclasses.replace(scan, finished_at=finished_at)

    asyncio.run(fill())
    return url


def counts(url: str) -> dict[ScanStatus, int]:
    async def read() -> dict[ScanStatus, int]:
        async with MemoryStore(url) as store:
            return dict((await store.stats()).counts)

    return asyncio.run(read())


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def test_prune_dry_run_reports_and_deletes_nothing_then_prune_deletes() -> None:
    url = finished_store(complete=3, error=2)

    dry = invoke("prune", "--dry-run", "--database-url", url, "--retention", "Complete=30m")
    real = invoke("prune", "--database-url", url, "--retention", "Complete=30m,Error=2h")

    assert dry.exit_code == 0, dry.output
    assert "Complete: would delete 3 scans finished before " in dry.stdout
    assert real.exit_code == 0, real.output
    assert "Complete: deleted 3 scans" in real.stdout and "Error: deleted 0 scans" in real.stdout
    assert counts(url)[ScanStatus.COMPLETE] == 0 and counts(url)[ScanStatus.ERROR] == 2


def test_prune_without_a_policy_keeps_everything_and_exits_1_while_a_worker_prunes() -> None:
    url = finished_store(complete=1, error=0)

    nothing = invoke("prune", "--database-url", url)

    async def hold() -> None:
        async with MemoryStore(url) as store:
            assert await store.lead(role=RETENTION_ROLE, owner="a-worker", term_s=60)

    asyncio.run(hold())
    busy = invoke("prune", "--database-url", url, "--retention", "Complete=1s")

    assert nothing.exit_code == 0 and "no --retention set" in nothing.stdout
    assert busy.exit_code == 1 and "retention role" in busy.stderr
    assert counts(url)[ScanStatus.COMPLETE] == 1


def test_export_writes_ndjson_to_stdout_and_resumes_from_the_cursor_it_prints() -> None:
    url = finished_store(complete=3, error=2)

    everything = invoke("export", "--database-url", url)
    errors = invoke("export", "--database-url", url, "--status", "Error")
    errors_lower = invoke("export", "--database-url", url, "--status", "error")  # any case, as for `scanq list`
    lines = [msgspec.json.decode(line) for line in everything.stdout.splitlines()]
    resumed = invoke("export", "--database-url", url, "--cursor", lines[1]["scan_id"])
    late = invoke("export", "--database-url", url, "--since", datetime.now(UTC).isoformat())
    bad = invoke("export", "--database-url", url, "--until", "tomorrow")

    assert everything.exit_code == 0, everything.output
    assert [line["scan_id"] for line in lines] == sorted(line["scan_id"] for line in lines)
    assert len(lines) == 5 and all("history" in line and "result" in line for line in lines)
    assert f"exported 5 scans; next --cursor {lines[-1]['scan_id']}" in everything.stderr
    assert [msgspec.json.decode(line)["status"] for line in errors.stdout.splitlines()] == ["Error", "Error"]
    assert errors_lower.stdout == errors.stdout
    assert [msgspec.json.decode(line)["scan_id"] for line in resumed.stdout.splitlines()] == [
        line["scan_id"] for line in lines[2:]
    ]
    assert late.stdout == "" and "exported 0 scans" in late.stderr
    assert bad.exit_code == 2 and "--until" in bad.stderr
