"""The SQLite store's capped claim (rule 9's ``max_per_target``) and the claim order of returned rows."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import msgspec

from scanq.store.sqlite.statements import CLAIM_CANDIDATES, CLAIM_IDS, RUNNING_BY_TARGET

# A claim returns rows of COLUMNS then fair_key: claim order is (priority DESC, fair_key, scan_id).
_PRIORITY, _FAIR_KEY = 5, -1
# The capped claim's first chunk of candidates is this many times its limit (most are taken when
# targets are spread out); each further chunk is twice the last, up to the most.
_CANDIDATES_PER_SCAN = 2
_MAX_CANDIDATES = 4096
_ABOVE_EVERY_PRIORITY = 2**63 - 1


def claim_order(row: tuple[Any, ...]) -> tuple[int, float, str]:
    """The sort key of a claimed row: (priority DESC, fair_key, scan_id)."""
    return -row[_PRIORITY], row[_FAIR_KEY], row[0]


def claim_capped(conn: sqlite3.Connection, params: dict[str, Any], *, limit: int, cap: int) -> list[Any]:
    """Claim up to ``limit`` scans in claim order, at most ``cap`` Running per non-null target (rule 9).

    Runs in the writer's ``BEGIN IMMEDIATE`` transaction: it holds the file's write lock from the
    counts below to the UPDATE, so no claimer of any process can make a target's scan Running in
    between, and Running scans are every worker's (they are rows of this file). Hence no overshoot
    without a counter to keep: the partial index of Running scans by target is the counter. A scan
    over the cap is never updated (it stays Accepted); the walk goes on to later candidates.
    Cost: about 2 * limit candidates when targets are spread out; a claim that cannot fill its limit
    steps over every Accepted scan of the full targets (in SQL, a fraction of a microsecond each).
    """
    running: dict[str, int] = {}  # per target seen so far: Running now, plus picked by this claim
    full: list[str] = []
    picked: list[str] = []
    walk = {"priority": _ABOVE_EVERY_PRIORITY, "fair_key": -math.inf, "scan_id": "", "now": params["now"]}
    chunk = max(limit * _CANDIDATES_PER_SCAN, 16)
    while len(picked) < limit:
        walk.update(full=msgspec.json.encode(full).decode(), chunk=chunk)
        rows = conn.execute(CLAIM_CANDIDATES, walk).fetchall()
        unseen = {target for _, _, _, target in rows if target is not None and target not in running}
        if unseen:
            running.update(dict.fromkeys(unseen, 0))
            targets = msgspec.json.encode(sorted(unseen)).decode()
            running.update(conn.execute(RUNNING_BY_TARGET, {"targets": targets}).fetchall())
            full += [target for target in unseen if running[target] >= cap]
        for scan_id, _, _, target in rows:
            if target is not None:
                if running[target] >= cap:
                    continue  # over the cap: stays Accepted
                running[target] += 1
                if running[target] >= cap:
                    full.append(target)
            picked.append(scan_id)
            if len(picked) == limit:
                break
        if len(rows) < chunk:
            break  # no more candidates
        walk.update(scan_id=rows[-1][0], priority=rows[-1][1], fair_key=rows[-1][2])
        chunk = min(chunk * 2, _MAX_CANDIDATES)
    if not picked:
        return []
    return conn.execute(CLAIM_IDS, {**params, "ids": msgspec.json.encode(picked).decode()}).fetchall()


__all__ = ["claim_capped", "claim_order"]
