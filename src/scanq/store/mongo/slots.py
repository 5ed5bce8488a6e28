"""MongoDB: the politeness cap (``Store`` rule 9, ``claim(max_per_target=…)``), in ``<collection>_target_slots``.

One document per target: ``{_id: target_key, holders: [{s: scan id, t: claim token, at}]}``,
an entry per Running scan of that target (or one being claimed). A capped claim
(``claim_capped``), round by round:

1. reads the next candidates in claim order, leaving out the targets it found full and
   the scans it failed to take (``{target_key: {$nin: …}}``, ``{_id: {$nin: …}}``), so a
   capped scan is skipped and stays Accepted, and the claim goes on to later scans;
2. takes slots, one atomic pipeline update per target of the round: the update appends
   the round's entries of that target only while the array is shorter than the cap. A
   single-document update is atomic, so however many claimers race on a target, the
   array never holds more than the cap: every Running scan of a target holds one of its
   entries (it was taken before the scan's ``find_one_and_update``), so no more than the
   cap of them can be Running (the cap counts every claimer's, and also the entries of
   scans claimed without a cap, appended after their claim: ``count_claimed``);
3. claims each candidate granted a slot (or without a target) by ``_id``, fenced by the
   attempt it was read at and by ``slot_revoked`` (below), and gives back the slots of
   those it lost to another claimer.

A scan leaving Running (finish, release, lease expiry: the store's ``_update_held``)
gives back its own entry: ``(s, t)``, with ``t`` the ``slot_token`` its claim wrote on it.
A Running scan is never cancelled outright (a cancel is a request), and prune only
deletes finished scans, so neither touches a slot.

A counter (``running += 1`` under ``running < cap``) would do the same while every
process lives, but a process that dies between taking a slot and claiming (or between
a finish and its give-back) would leak the slot for good, and a target with leaked
slots up to its cap would never be scanned again. An entry names its scan and claim,
so the reaper repairs leaks (``repair``): an entry older than ``REPAIR_AFTER_S`` whose
scan is not Running under its token is dropped, after the claim it stands for is made
impossible (``slot_revoked`` on the Accepted scan, which that claim's filter excludes:
a stalled claimer can never turn a dropped entry back into a Running scan).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pymongo import ASCENDING, IndexModel, ReturnDocument, UpdateOne

from scanq.models import Scan, ScanStatus
from scanq.store.mongo import statements as st
from scanq.store.mongo.rows import Document, scan_from_document

if TYPE_CHECKING:
    from pymongo.asynchronous.collection import AsyncCollection

logger = logging.getLogger(__name__)

SLOTS_SUFFIX = "_target_slots"
# Old entries first: the reaper's repair reads the start of this index.
SLOT_INDEXES = [IndexModel([("holders.at", ASCENDING)], name="holder_at")]
# An entry this old is checked against its scan by the reaper (a claim takes milliseconds between its
# two steps; a Running scan's entry found legitimate is stamped again, so it is checked once per period).
REPAIR_AFTER_S = 60.0
REPAIR_BATCH = 100
CANDIDATE_PROJECTION = {"target_key": True, "attempt": True}


def new_token() -> str:
    """A claim's name, written on the scans it takes (``slot_token``) and in their slots' entries."""
    return secrets.token_hex(8)


def take_update(entries: list[Document], cap: int) -> list[Document]:
    """Append ``entries`` in order while the target holds fewer than ``cap``; more never (one atomic update)."""
    held = {"$ifNull": ["$holders", []]}
    free = {"$max": [0, {"$subtract": [cap, {"$size": held}]}]}
    added = {"$cond": [{"$gt": [free, 0]}, {"$slice": [{"$literal": entries}, free]}, []]}
    return [{"$set": {"holders": {"$concatArrays": [held, added]}}}]


async def take(
    slots: AsyncCollection[Document], target: str, entries: list[Document], cap: int
) -> tuple[set[str], bool]:
    """Take slots of ``target`` for the scans of ``entries`` (in claim order): the scans granted one, and if full."""
    doc = await slots.find_one_and_update(
        {"_id": target}, take_update(entries, cap), upsert=True, return_document=ReturnDocument.AFTER
    )
    holders: list[Document] = (doc or {}).get("holders") or []
    token = entries[0]["t"]
    granted = {entry["s"] for entry in holders if entry.get("t") == token}
    return granted, len(holders) >= cap


async def give_back(slots: AsyncCollection[Document], target: str, scan_id: str, token: str | None) -> None:
    """Drop the entry of ``scan_id`` taken by the claim ``token`` (nothing if it holds none)."""
    await slots.update_one({"_id": target}, {"$pull": {"holders": {"s": scan_id, "t": token}}})


async def count_claimed(slots: AsyncCollection[Document], claimed: Sequence[Scan], token: str, now: datetime) -> None:
    """Append entries for scans claimed without a cap, so capped claims count them too (after the fact)."""
    by_target: dict[str, list[Document]] = {}
    for scan in claimed:
        if scan.target_key is not None:
            by_target.setdefault(scan.target_key, []).append({"s": scan.scan_id, "t": token, "at": now})
    await asyncio.gather(
        *(
            slots.update_one({"_id": target}, {"$push": {"holders": {"$each": entries}}}, upsert=True)
            for target, entries in by_target.items()
        )
    )


async def claim(
    scans: AsyncCollection[Document],
    slots: AsyncCollection[Document],
    worker_id: str,
    *,
    limit: int,
    lease_s: float,
    cap: int | None,
    now: Callable[[], datetime],
) -> list[Scan]:
    """``MongoStore.claim``: ``claim_capped`` with a cap, else ``claim_uncapped`` (today's claim, unchanged)."""
    if cap is None:
        return await claim_uncapped(scans, slots, worker_id=worker_id, limit=limit, lease_s=lease_s, now=now)
    return await claim_capped(scans, slots, worker_id=worker_id, limit=limit, lease_s=lease_s, cap=cap, now=now)


async def claim_uncapped(
    scans: AsyncCollection[Document],
    slots: AsyncCollection[Document],
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    now: Callable[[], datetime],
) -> list[Scan]:
    """Claim up to ``limit`` scans in claim order, one atomic ``find_one_and_update`` each, no cap.

    The claimed scans with a target still count against capped claims: their entries are
    appended after the claim (``count_claimed``: one update per target, only when one has a target).
    """
    token = new_token()
    claimed: list[Scan] = []
    for _ in range(limit):
        moment = now()
        doc = await scans.find_one_and_update(
            st.claimable_filter(moment),
            st.claim_update(worker_id=worker_id, now=moment, lease_s=lease_s, slot_token=token),
            sort=st.CLAIM_SORT,
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            break
        claimed.append(scan_from_document(doc))
    if any(scan.target_key is not None for scan in claimed):
        await count_claimed(slots, claimed, token, now())
    return claimed


async def claim_capped(
    scans: AsyncCollection[Document],
    slots: AsyncCollection[Document],
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    cap: int,
    now: Callable[[], datetime],
) -> list[Scan]:
    """Claim up to ``limit`` scans in claim order, never more than ``cap`` Running per target (module docstring)."""
    token = new_token()
    claimed: list[Scan] = []
    full: set[str] = set()
    passed: set[str] = set()
    while len(claimed) < limit:
        moment = now()
        query = st.claimable_filter(moment)
        if full:
            query["target_key"] = {"$nin": sorted(full)}
        if passed:
            query["_id"] = {"$nin": sorted(passed)}
        cursor = scans.find(query, CANDIDATE_PROJECTION, sort=st.CLAIM_SORT, limit=limit - len(claimed))
        candidates = await cursor.to_list()
        if not candidates:
            break
        # Shielded: a claim cancelled half-way still gives back what it took (its scans, if any, stay
        # Running until their lease expires, as a claim whose answer is lost does).
        taken, lost, newly_full = await asyncio.shield(
            _claim_round(
                scans, slots, candidates, worker_id=worker_id, lease_s=lease_s, cap=cap, token=token, now=moment
            )
        )
        claimed.extend(taken)
        passed.update(lost)
        full.update(newly_full)
    return claimed


async def _claim_round(
    scans: AsyncCollection[Document],
    slots: AsyncCollection[Document],
    candidates: list[Document],
    *,
    worker_id: str,
    lease_s: float,
    cap: int,
    token: str,
    now: datetime,
) -> tuple[list[Scan], set[str], set[str]]:
    """Take slots for ``candidates``, claim those granted one, give back the lost ones' slots.

    Returns the scans claimed, the candidates lost to another claimer, and the targets found full.
    """
    by_target: dict[str, list[Document]] = {}
    for doc in candidates:
        if doc.get("target_key") is not None:
            by_target.setdefault(doc["target_key"], []).append({"s": doc["_id"], "t": token, "at": now})
    answers = await asyncio.gather(*(take(slots, t, entries, cap) for t, entries in by_target.items()))
    granted: set[str] = set()
    full: set[str] = set()
    for target, (ids, is_full) in zip(by_target, answers, strict=True):
        granted |= ids
        if is_full:
            full.add(target)
    chosen = [doc for doc in candidates if doc.get("target_key") is None or doc["_id"] in granted]
    results = await asyncio.gather(
        *(
            scans.find_one_and_update(
                _fenced(doc, now, token),
                st.claim_update(worker_id=worker_id, now=now, lease_s=lease_s, slot_token=token),  # its own event key
                return_document=ReturnDocument.AFTER,
            )
            for doc in chosen
        ),
        return_exceptions=True,
    )
    claimed: list[Scan] = []
    lost: set[str] = set()
    returns = []
    failure: BaseException | None = None
    for doc, result in zip(chosen, results, strict=True):
        if isinstance(result, BaseException):
            # Applied or not, nobody knows: the entry stays, and the reaper's repair settles it.
            failure = failure or result
        elif result is None:
            lost.add(doc["_id"])
            if doc.get("target_key") is not None:
                returns.append(give_back(slots, doc["target_key"], doc["_id"], token))
        else:
            claimed.append(scan_from_document(result))
    await asyncio.gather(*returns)
    if failure is not None:
        raise failure
    return claimed, lost, full


def _fenced(candidate: Document, now: datetime, token: str) -> Document:
    """The candidate, if still claimable at the attempt it was read at, and this claim's slot not revoked."""
    query = {**st.claimable_filter(now), "_id": candidate["_id"], "attempt": candidate.get("attempt")}
    if candidate.get("target_key") is not None:
        query["slot_revoked"] = {"$ne": token}
    return query


async def repair(scans: AsyncCollection[Document], slots: AsyncCollection[Document], *, now: datetime) -> int:
    """Drop the entries older than ``REPAIR_AFTER_S`` whose scan is not Running under them; how many.

    Each suspect's claim is made impossible first (its token into the Accepted scan's ``slot_revoked``),
    then the scan is read again: Running under the token means the claim won the race, and the entry
    stays; otherwise the claim can no longer succeed (revoked, or the scan moved past the attempt it
    was fenced at) and the entry goes. Entries found legitimate are stamped ``now``.
    """
    cutoff = now - timedelta(seconds=REPAIR_AFTER_S)
    docs = await slots.find({"holders.at": {"$lt": cutoff}}).limit(REPAIR_BATCH).to_list()
    old = [
        (doc["_id"], entry["s"], entry.get("t"))
        for doc in docs
        for entry in doc.get("holders") or ()
        if isinstance(entry.get("at"), datetime) and entry["at"] < cutoff
    ]
    if not old:
        return 0
    running = await _running_tokens(scans, {scan_id for _, scan_id, _ in old})
    suspects = [entry for entry in old if running.get(entry[1]) != entry[2]]
    if suspects:
        await asyncio.gather(
            *(
                scans.update_one(
                    {"_id": scan_id, "status": ScanStatus.ACCEPTED.value}, {"$addToSet": {"slot_revoked": token}}
                )
                for _, scan_id, token in suspects
            )
        )
        running = await _running_tokens(scans, {scan_id for _, scan_id, _ in old})
    stale = [entry for entry in old if running.get(entry[1]) != entry[2]]
    updates: list[UpdateOne] = [
        UpdateOne({"_id": target}, {"$pull": {"holders": {"s": scan_id, "t": token}}})
        for target, scan_id, token in stale
    ]
    updates += [
        UpdateOne(
            {"_id": target},
            {"$set": {"holders.$[e].at": now}},
            array_filters=[{"e.s": scan_id, "e.t": token}],
        )
        for target, scan_id, token in old
        if running.get(scan_id) == token
    ]
    await slots.bulk_write(updates, ordered=False)
    if stale:
        logger.warning("gave back %d target slots held by no Running scan (a claimer or finisher died)", len(stale))
    return len(stale)


async def _running_tokens(scans: AsyncCollection[Document], scan_ids: set[str]) -> dict[str, Any]:
    """The slot token of each of these scans that is Running."""
    found = scans.find({"_id": {"$in": sorted(scan_ids)}, "status": ScanStatus.RUNNING.value}, {"slot_token": True})
    return {doc["_id"]: doc.get("slot_token") async for doc in found}


__all__ = [
    "REPAIR_AFTER_S",
    "SLOTS_SUFFIX",
    "SLOT_INDEXES",
    "claim",
    "claim_capped",
    "claim_uncapped",
    "count_claimed",
    "give_back",
    "new_token",
    "repair",
    "take",
]
