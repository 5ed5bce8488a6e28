"""The one interface every storage backend implements.

Each method is one domain operation (River's driver ``Executor`` is the model),
keyword-only, returning ``scanq.models`` objects. Backends translate their
driver's errors into ``StoreError`` / ``StoreUnavailable`` / ``ScanNotFound`` /
``ScanFinished`` at this boundary.

Rules every backend keeps (``tests/contract`` checks each, on every backend):

1. Atomic claim: a claimable scan (``Accepted``, ``available_at <= now``) is
   claimed by exactly one worker however many race; ``claim`` takes up to
   ``limit`` ordered by priority (higher first) then age (older first).
   Claiming sets ``Running``, ``lease_owner``, ``lease_expires_at``,
   ``attempt + 1``, ``started_at`` and appends an open ``Attempt`` to history.
   ``started_at`` is the same "now" the claim compared ``available_at`` with,
   and every transition back to Accepted sets ``available_at`` no earlier than
   its own "now" (its ``finished_at``): an attempt's history never overlaps.
2. Lease: ``heartbeat`` extends the leases the worker still holds;
   ``requeue_expired`` (the reaper, safe to run from every worker at once)
   moves Running scans whose lease has expired back to ``Accepted`` (history
   outcome ``LeaseExpired``) while attempts are left, else to ``Error`` with
   error ``"lease expired"``; a scan whose cancel was requested goes to
   ``Cancelled`` instead. ``release`` (graceful shutdown) likewise returns a
   held scan to ``Accepted`` without counting the attempt, or makes it
   ``Cancelled`` if its cancel was requested.
3. Fencing: ``heartbeat``/``finish``/``release`` touch a scan only while it is
   ``Running`` with the same ``lease_owner`` and ``attempt``; anything else is
   refused silently (reported as lost / False). A scan completes at most once.
4. Durable acknowledgement: ``create``/``create_many`` return only after the
   commit is durable. Concurrent ``create`` calls are group-committed.
5. Wake-up: ``wait_for_work`` returns soon after new claimable work appears
   (or at ``timeout_s``), without a fixed one-second poll.
6. Retention: ``prune`` deletes only terminal scans finished before the
   cutoff, in short batches of the (status, finished_at) index, and only while
   its caller holds ``RETENTION_ROLE`` (``lead``): one pruner at a time across
   every process; ``stats`` counts stay exact.
7. Tenants: every scan belongs to one tenant (``NewScan.tenant``). A method
   that takes ``tenant`` sees only that tenant's scans when it is a name and
   every tenant's when it is None: another tenant's scan is answered exactly
   as an unknown id (``ScanNotFound``, also by ``cancel``). An idempotency key
   is unique within its tenant (two tenants may use the same key). Counts by
   status are kept per tenant, so ``stats(tenant=T)`` costs what ``stats()``
   costs. ``submitted_by`` / ``cancelled_by`` are stored and read back.
8. API tokens and tenant limits are stored beside the scans (``create_token``
   … ``touch_tokens``, ``set_tenant_limits`` …): the secret is never stored,
   only its hash, which is unique.
9. Fair share and politeness (``claim``): each new scan gets a fair key, the
   virtual start time of weighted fair queueing: ``max(now, T's last fair
   key) + 1 / weight`` for its tenant T (``TenantLimits.weight``, default 1;
   ``now`` in epoch seconds by the store's clock; a batch takes consecutive
   keys in its order), and T's last fair key becomes it. ``claim`` orders by
   priority (higher first), then fair key, then ``scan_id``; a scan going back
   to Accepted keeps its key. With ``max_per_target`` set, a claim never makes
   more than that many scans with the same non-null ``target_key`` Running at
   once (counting every worker's), whoever races: a scan over the cap stays
   Accepted and the claim goes on to other scans. Scans whose ``target_key`` is
   None are never capped.
10. Events: every status transition appends one ``ScanEvent`` in its own
   transaction, read back in one settled order (``EventLog``, in ``events_contract``).
11. Webhooks: a tenant's endpoints, and one delivery per subscribed endpoint and
   event, leased to one worker at a time (``WebhookOutbox``, in ``events_contract``).

Timestamps are timezone-aware UTC datetimes; backends take "now" from one clock
(the store process for SQLite, the server for PostgreSQL/MongoDB where it can).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from scanq.exceptions import ValidationError
from scanq.models import (
    Actor,
    ApiToken,
    Created,
    Finish,
    HeartbeatResult,
    Lease,
    NewScan,
    Page,
    Scan,
    ScanStatus,
    Stats,
    TenantLimits,
    TenantQueue,
)
from scanq.record_makers import make_scan
from scanq.store.events_contract import MAX_PAGE_SIZE, EventLog, WebhookOutbox, callback_endpoint_id
from scanq.store.finished_rules import (
    FINISHED_STATUSES,
    MAX_FINISHED_STEPS,
    check_after,
    check_finished_status,
    count_steps,
    finished_buckets,
)

# finished_counts answers at most this many steps (the API asks for far fewer).
RETENTION_ROLE = "retention"
"""The role (``Store.lead``) whose holder alone may ``prune``: one pruner at a time across all workers."""
WEBHOOK_ROLE = "webhooks"
"""The role whose holder alone may ``dispatch_events``: one dispatcher at a time, so the cursor moves in order."""


class Store(EventLog, WebhookOutbox, Protocol):
    """The storage backend: one implementation per database, chosen by URL in ``open_store``."""

    async def __aenter__(self) -> Self:
        # Backends subclass Store explicitly and inherit these two; the rest they must implement
        # (mypy refuses to instantiate a backend that leaves a trivial protocol method in place).
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def open(self) -> None:
        """Connect and create or migrate the schema. ``__aenter__`` calls it."""

    async def aclose(self) -> None:
        """Release connections; pending group commits are flushed first."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers a trivial query."""

    async def create(self, *, scan: NewScan) -> Created:
        """Store one scan durably as Accepted, with its ``tenant`` and ``submitted_by``.

        Concurrent calls share one transaction (group commit). A scan whose
        ``idempotency_key`` is already stored for the same tenant is not
        inserted: the stored scan is returned with ``is_new=False``.
        """

    async def create_many(self, *, scans: Sequence[NewScan]) -> list[Created]:
        """Store several scans in one transaction: all or none. Idempotency as in ``create``."""

    async def get(self, *, scan_id: str, tenant: str | None = None) -> Scan:
        """Return one scan; raise ``ScanNotFound`` (also when it belongs to another tenant than ``tenant``)."""

    async def list_scans(
        self, *, status: ScanStatus | None = None, limit: int = 50, cursor: str | None = None, tenant: str | None = None
    ) -> Page:
        """Return a page of scans newest first (by ``scan_id``, which is time-ordered), of ``tenant`` (None: all).

        ``cursor`` is the ``next_cursor`` of the previous page (see ``encode_cursor``);
        a page never repeats or skips a scan because of concurrent inserts.
        Raise ``ValidationError`` for a cursor this store did not make.
        """

    async def tenant_queues(self, *, limit: int = 100) -> list[TenantQueue]:
        """The tenants with Accepted or Running scans, most scans first (then by name), at most ``limit``.

        From the per-tenant counts (no scan of finished rows), with each tenant's oldest Accepted scan.
        """

    async def stats(self, *, tenant: str | None = None) -> Stats:
        """Counts by status and the oldest Accepted scan's ``created_at``, without scanning finished rows per call.

        ``tenant``: that tenant's scans only (None: every tenant), at the same cost: the counts are kept
        per tenant. A tenant with no scans has every count zero.
        """

    async def claim(
        self, *, worker_id: str, limit: int, lease_s: float, max_per_target: int | None = None
    ) -> list[Scan]:
        """Atomically claim up to ``limit`` claimable scans for ``worker_id`` (rules 1 and 9).

        ``max_per_target``: the most scans of one ``target_key`` Running at once (None: no cap).
        """

    async def heartbeat(self, *, leases: Sequence[Lease], lease_s: float) -> HeartbeatResult:
        """Extend the leases still held to now + ``lease_s``; report lost ones and pending cancels (rules 2, 3)."""

    async def finish(self, *, finishes: Sequence[Finish]) -> list[bool]:
        """Apply each fenced outcome; True where it was applied, False where the lease was no longer held.

        COMPLETE sets ``result``, ERROR sets ``error``, CANCELLED sets Cancelled;
        all three set ``finished_at`` and clear the lease. RETRY returns the
        scan to Accepted with ``available_at = retry_at``, but never before the
        store's own now (the worker's clock may lag): a retry is not claimable
        before its predecessor's ``finished_at``. Each closes the open history
        entry with its outcome, ``finished_at`` and error.
        """

    async def release(self, *, leases: Sequence[Lease]) -> int:
        """Graceful shutdown: hand back the scans ``leases`` still hold; return how many (rules 2, 3).

        Each goes back to Accepted, due now, without counting the attempt
        (history outcome Released). A scan whose cancel was requested is not run
        again: it becomes Cancelled (``finished_at`` set, attempt kept, history
        outcome Cancelled), as ``requeue_expired`` does. Either way the lease is
        cleared. Only scans made Accepted wake ``wait_for_work``.
        """

    async def requeue_expired(self, *, limit: int = 1000) -> int:
        """The reaper (rule 2): handle up to ``limit`` Running scans whose lease expired; return how many."""

    async def cancel(self, *, scan_id: str, tenant: str | None = None, by: Actor | None = None) -> Scan:
        """Cancel a scan of ``tenant`` (None: any); ``by`` is recorded as its ``cancelled_by``.

        Accepted: becomes Cancelled at once. Running: ``cancel_requested`` is
        set and the holding worker stops it (heartbeat reports it). Raise
        ``ScanNotFound`` (also for another tenant's scan), or ``ScanFinished``
        for a terminal scan (nothing is written then, ``cancelled_by`` included).
        """

    async def wait_for_work(self, *, timeout_s: float) -> None:
        """Sleep until new claimable work may exist, or ``timeout_s`` passed (rule 5).

        An early return without new work is allowed (a backend may return once
        while it sets up its notification channel); callers simply claim and wait again.
        """

    # -- API tokens and tenant limits ----------------------------------------------------------------

    async def create_token(self, *, token: ApiToken) -> None:
        """Store a new token; ``ValidationError`` when its ``token_id`` or ``secret_hash`` is already stored."""

    async def find_token(self, *, secret_hash: str) -> ApiToken | None:
        """The token with this hash, revoked and expired ones included (the caller judges), or None."""

    async def list_tokens(self, *, tenant: str | None = None) -> list[ApiToken]:
        """Every token of ``tenant`` (None: all), revoked and expired ones included, oldest first (then by id)."""

    async def revoke_token(self, *, token_id: str) -> ApiToken:
        """Set ``revoked_at`` to the store's now (kept if already revoked) and return the token; ``TokenNotFound``."""

    async def touch_tokens(self, *, last_used: Mapping[str, datetime]) -> None:
        """Record when tokens were last used (token id → time), in one write; never moves a time backwards.

        Unknown ids are ignored. Callers batch: one call per second or so, not one per request.
        """

    async def set_tenant_limits(self, *, limits: TenantLimits) -> None:
        """Store ``limits`` for its tenant, replacing every field of what was stored."""

    async def get_tenant_limits(self, *, tenant: str) -> TenantLimits:
        """The stored limits of ``tenant``, or ``TenantLimits(tenant=tenant)`` (unlimited, weight 1) when none."""

    async def list_tenant_limits(self) -> list[TenantLimits]:
        """Every tenant with stored limits, by tenant name."""

    # -- finished scans: throughput, export, retention ----------------------------------------------
    # ``tenant``: that tenant's scans only; None: every tenant's.

    async def finished_counts(
        self, *, since: datetime, until: datetime, step_s: float, tenant: str | None = None
    ) -> list[tuple[datetime, dict[ScanStatus, int]]]:
        """Scans finished in each ``step_s`` step of ``[since, until)``, per terminal status, by ``finished_at``.

        Every step is present, oldest first, starting at ``since + i * step_s``, each with the
        three terminal statuses (zero when none): see ``finished_buckets``. The cost is bounded
        by the window, not the table: a range of the (status, finished_at) index per status.
        Raise ``ValidationError`` for a step that is not positive or more than ``MAX_FINISHED_STEPS`` steps.
        """

    async def export_scans(
        self,
        *,
        status: ScanStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        after: str | None = None,
        limit: int = MAX_PAGE_SIZE,
        tenant: str | None = None,
    ) -> list[Scan]:
        """One page of finished scans in key order (``scan_id`` ascending), whole records, after ``after``.

        Only terminal scans (``status``: that one, None: all three) whose ``finished_at`` is in
        ``[since, until)`` (a bound left None is open). The next page starts after the last
        ``scan_id`` of this one; an empty page is the end. ``limit`` is capped at ``MAX_PAGE_SIZE``.
        Raise ``ValidationError`` for a status that is not terminal or an ``after`` that is no scan id.
        """

    async def lead(self, *, role: str, owner: str, term_s: float) -> bool:
        """Become, or stay, the one holder of ``role`` for ``term_s`` seconds; False while another's term runs.

        Across every store on the same database (every process) at most one owner holds a role
        at a time, by the store's clock. Calling again before the term ends renews it; an owner
        that stops calling (a worker that died) loses the role when its term ends, and the next
        caller takes it over.
        """

    async def resign(self, *, role: str, owner: str) -> None:
        """Give ``role`` up at once if ``owner`` holds it (a graceful stop), so the next caller need not wait."""

    async def prune(
        self,
        *,
        status: ScanStatus,
        finished_before: datetime,
        limit: int,
        owner: str,
        dry_run: bool = False,
        scan_ids: Sequence[str] | None = None,
        tenant: str | None = None,
    ) -> list[Scan]:
        """Delete the next batch of scans retention removes; return them as they were, in retention order.

        The batch: up to ``limit`` (capped at ``MAX_PAGE_SIZE``) scans of the terminal ``status``
        whose ``finished_at`` is before ``finished_before``, oldest ``finished_at`` first, then by
        ``scan_id``: a contiguous range of the (status, finished_at) index, so a batch is short
        and a pass never walks the scans it keeps. Accepted and Running scans are never deleted
        and the counts of ``stats`` stay exact.

        Args:
            owner: deletes only while ``owner`` holds ``RETENTION_ROLE`` (``lead``), checked in the
                same write; otherwise nothing is deleted and the answer is empty.
            dry_run: return the batch, delete nothing (no role needed).
            scan_ids: delete only these (those that still match): the batch a dry run returned and
                the archive has written.
        """


def accepted_scan(new: NewScan, *, updated_at: datetime, available_at: datetime | None = None) -> Scan:
    """The record a backend just stored for ``new``, built from the submission instead of read back.

    Args:
        new: the submission.
        updated_at: the store's clock at the insert.
        available_at: when the store set it itself (else the submission's, or its creation time).
    """
    # By position, in Scan's field order (record_makers): every create answers one, a batch hundreds.
    return make_scan(
        new.scan_id, ScanStatus.ACCEPTED, new.target, new.scanner, dict(new.options), new.priority, 0,
        new.max_attempts, new.created_at, updated_at, available_at or new.available_at or new.created_at,
        None, None, None, None, None, None, new.idempotency_key, False, (), new.tenant, new.submitted_by, None,
        new.target_key, new.callback_url,
    )  # fmt: skip


def encode_cursor(scan_id: str) -> str:
    """Make the opaque ``next_cursor`` that continues a list after ``scan_id``."""
    return base64.urlsafe_b64encode(scan_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """Read a cursor made by ``encode_cursor``; raise ``ValidationError`` for anything else."""
    from scanq.ids import is_scan_id

    try:
        scan_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationError("invalid cursor") from None
    if not is_scan_id(scan_id):
        raise ValidationError("invalid cursor")
    return scan_id


__all__ = [
    "FINISHED_STATUSES",
    "MAX_FINISHED_STEPS",
    "MAX_PAGE_SIZE",
    "RETENTION_ROLE",
    "WEBHOOK_ROLE",
    "Store",
    "accepted_scan",
    "callback_endpoint_id",
    "check_after",
    "check_finished_status",
    "count_steps",
    "decode_cursor",
    "encode_cursor",
    "finished_buckets",
]
