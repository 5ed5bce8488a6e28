"""``Preparer``: the records it makes by position are those built by name, and a refusal leaves the index."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from scanq.config import Settings
from scanq.exceptions import UnknownScanner, ValidationError
from scanq.models import Actor, Caller, NewScan, Scope
from scanq.preparation import Preparer
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.submissions import SubmitRequest

NOW = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


class HostScanner(Scanner):
    """Lowercases its target; its politeness key is the target."""

    name = "host"

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        if target is None:
            raise ValidationError("the host scanner needs a target")
        return target.lower()

    def politeness_key(self, *, target: str | None) -> str | None:
        return target

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        return {}


class Callbacks:
    async def check_callback_url(self, url: str) -> str:
        return url.lower()

    async def ensure_callback_endpoint(self, tenant: str) -> None:
        return None


def _preparer() -> Preparer:
    settings = Settings(default_scanner="host", max_attempts=4)
    registry = ScannerRegistry(settings, {"host": HostScanner})
    return Preparer(scanners=registry, settings=settings, callbacks=Callbacks())


CALLER = Caller(tenant="acme", scopes=frozenset(Scope), actor=Actor(token_id="tok_1", token_name="ci"))


async def test_records_are_those_built_by_name() -> None:
    submissions = [
        SubmitRequest(target="Example.COM"),
        SubmitRequest(
            target="b.example",
            scanner="host",
            options={"ports": [443]},
            priority=-5,
            max_attempts=1,
            callback_url="https://Hooks.example/x",
        ),
    ]
    prepared: list[NewScan] = []
    await _preparer().prepare(prepared, submissions, idempotency_key="k", now=NOW, caller=CALLER, checked={})
    expected = [
        NewScan(
            scan_id=prepared[0].scan_id,
            created_at=NOW,
            target="example.com",
            scanner="host",
            max_attempts=4,
            idempotency_key="k",
            tenant="acme",
            submitted_by=CALLER.actor,
            target_key="example.com",
        ),
        NewScan(
            scan_id=prepared[1].scan_id,
            created_at=NOW,
            target="b.example",
            scanner="host",
            options={"ports": [443]},
            priority=-5,
            max_attempts=1,
            idempotency_key="k",
            tenant="acme",
            submitted_by=CALLER.actor,
            target_key="b.example",
            callback_url="https://hooks.example/x",
        ),
    ]
    assert prepared == expected
    assert prepared[0].scan_id != prepared[1].scan_id
    assert prepared[1].options is not submissions[1].options


@pytest.mark.parametrize(
    ("bad", "error"),
    [(SubmitRequest(target=None), ValidationError), (SubmitRequest(target="x", scanner="nope"), UnknownScanner)],
)
async def test_a_refusal_leaves_the_submissions_before_it(bad: SubmitRequest, error: type[Exception]) -> None:
    prepared: list[NewScan] = []
    submissions = [SubmitRequest(target="a.example"), SubmitRequest(target="b.example"), bad, SubmitRequest()]
    with pytest.raises(error):
        await _preparer().prepare(prepared, submissions, idempotency_key=None, now=NOW, caller=CALLER, checked={})
    assert [new.target for new in prepared] == ["a.example", "b.example"]
