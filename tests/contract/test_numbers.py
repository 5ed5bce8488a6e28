"""Numbers in options come back as they were sent, and an identical replay is not a conflict.

Part of the Store contract: every test runs on every backend (see ``conftest.py``).
PostgreSQL's ``jsonb`` rewrote numbers (``1.5e308`` as a 309-digit integer, ``-0.0``
as ``0.0``), so an identical ``Idempotency-Key`` replay was refused there alone.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from scanq.config import Settings
from scanq.exceptions import IdempotencyConflict
from scanq.models import Scan
from scanq.scanners import ScannerRegistry
from scanq.scans import ScanService, SubmitRequest
from scanq.store import Store
from tests.contract.helpers import claim_one, new_scan

# Numbers a normalising store rewrites, keys in an order a normalising store sorts.
AWKWARD_OPTIONS: dict[str, Any] = {
    "zz": 1.5e308,
    "neg_zero": -0.0,
    "tiniest": 5e-324,
    "float_one": 1.0,
    "int_one": 1,
    "exponent": 1e-7,
    "b": {"y": [-0.0, 1.5e308, 2.5], "x": 123456789.125},
    "a": True,
}


def encoded(options: Any) -> bytes:
    """The JSON text of ``options``: floats keep their sign and form, keys their order."""
    return msgspec.json.encode(options)


def assert_as_sent(scan: Scan) -> None:
    assert encoded(scan.options) == encoded(AWKWARD_OPTIONS)


@pytest.fixture
def service(store: Store) -> ScanService:
    settings = Settings(database_url="memory://unused")
    return ScanService(store, ScannerRegistry(settings), settings)


async def test_options_come_back_exactly_as_sent(store: Store) -> None:
    created = await store.create(scan=new_scan(options=AWKWARD_OPTIONS, target="a"))
    [in_batch] = await store.create_many(scans=[new_scan(options=AWKWARD_OPTIONS, target="b")])

    assert_as_sent(created.scan)
    assert_as_sent(in_batch.scan)
    assert_as_sent(await store.get(scan_id=created.scan.scan_id))
    page = await store.list_scans(status=None, limit=10, cursor=None)
    assert len(page.scans) == 2
    for scan in page.scans:
        assert_as_sent(scan)
    assert_as_sent(await claim_one(store))


async def test_an_identical_replay_with_awkward_numbers_is_the_same_scan(service: ScanService) -> None:
    request = SubmitRequest(scanner="noop", options=AWKWARD_OPTIONS)

    first = await service.submit(request, idempotency_key="numbers")
    again = await service.submit(
        SubmitRequest(scanner="noop", options=dict(AWKWARD_OPTIONS)), idempotency_key="numbers"
    )

    assert first.is_new and not again.is_new
    assert again.scan.scan_id == first.scan.scan_id
    assert_as_sent(again.scan)


async def test_a_replay_is_compared_on_what_was_submitted(service: ScanService) -> None:
    """Values Python calls equal but JSON tells apart (``true``/``1``, ``1``/``1.0``, ``-0.0``/``0.0``) differ."""
    await service.submit(SubmitRequest(scanner="noop", options={"flag": True, "n": 1, "z": -0.0}), idempotency_key="k")

    for changed in (
        {"flag": 1, "n": 1, "z": -0.0},
        {"flag": True, "n": 1.0, "z": -0.0},
        {"flag": True, "n": 1, "z": 0.0},
    ):
        with pytest.raises(IdempotencyConflict):
            await service.submit(SubmitRequest(scanner="noop", options=changed), idempotency_key="k")
    # Object keys are unordered in JSON: the same members in another order are the same request.
    same = await service.submit(
        SubmitRequest(scanner="noop", options={"z": -0.0, "n": 1, "flag": True}), idempotency_key="k"
    )
    assert not same.is_new
