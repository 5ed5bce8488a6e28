"""calm_collector: start-up's objects frozen out of the cyclic collector's passes, young passes made rarer."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from scanq.api import create_status_app
from scanq.collector import YOUNG_THRESHOLD, calm_collector
from scanq.config import Settings
from scanq.supervisor.commands import serve_app


@pytest.fixture
def restored_collector() -> Iterator[None]:
    """Put the test process's collector back as it was (calm_collector is meant for a service or worker process)."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_collector")
def test_calm_collector_freezes_what_exists_and_raises_only_the_first_threshold() -> None:
    _, *older = gc.get_threshold()
    calm_collector()
    assert gc.get_freeze_count() > 0
    assert list(gc.get_threshold()) == [YOUNG_THRESHOLD, *older]
    assert gc.isenabled()


@pytest.mark.usefixtures("restored_collector")
def test_cycles_made_after_it_are_still_collected() -> None:
    calm_collector()

    class Node:
        partner: object = None

    first, second = Node(), Node()
    first.partner, second.partner = second, first
    watched = weakref.ref(first)
    del first, second
    gc.collect()
    assert watched() is None


@pytest.mark.usefixtures("restored_collector")
def test_a_service_calms_its_collector_before_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[int, int]] = []

    def serve(app: object, *, settings: Settings, port: int) -> None:
        seen.append((gc.get_freeze_count(), gc.get_threshold()[0]))

    monkeypatch.setattr("scanq.api.server.serve", serve)
    monkeypatch.setattr("scanq.supervisor.commands.follow_supervisor", lambda: None)
    gc.unfreeze()

    serve_app(create_status_app(Settings(database_url="memory://calm")), settings=Settings(), port=0)

    [(frozen, young_threshold)] = seen
    assert frozen > 0
    assert young_threshold == YOUNG_THRESHOLD
