"""Rules of ``record_deliveries`` every backend shares (``events_contract`` rule 11), with no I/O.

A result applies only while its worker holds the delivery's lease, and applying it clears the
lease: of several results for one delivery by one worker in one call, as if applied one after
another, only the first can apply; a result of another worker never held the lease. So each
backend sends only the first result per (endpoint, event, worker) and answers every repeat False.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Hashable, Sequence
from typing import TypeVar

from scanq.models import DeliveryResult

P = TypeVar("P", bound=Hashable)

ResultKey = tuple[str, P, str]
"""A delivery (its endpoint, the backend's position of its event) and the worker reporting on it."""


def first_results(results: Sequence[DeliveryResult], *, position: Callable[[str], P | None]) -> dict[ResultKey[P], int]:
    """The index in ``results`` of the first result per (endpoint, event position, worker), in that order.

    Args:
        results: what ``record_deliveries`` was given.
        position: the backend's position of an event id; None for an id it cannot have made (that
            result names no delivery: it is left out, and answered False).
    """
    firsts: dict[ResultKey[P], int] = {}
    for index, result in enumerate(results):
        at = position(result.event_id)
        if at is not None:
            firsts.setdefault((result.endpoint_id, at, result.worker_id), index)
    return firsts


def answers(count: int, firsts: dict[ResultKey[P], int], applied: Container[ResultKey[P]]) -> list[bool]:
    """``record_deliveries``' answer: True only at the index of a first result whose key was applied.

    Args:
        count: how many results were given.
        firsts: ``first_results`` of them.
        applied: the keys the backend applied.
    """
    answered = [False] * count
    for key, index in firsts.items():
        answered[index] = key in applied
    return answered


__all__ = ["ResultKey", "answers", "first_results"]
