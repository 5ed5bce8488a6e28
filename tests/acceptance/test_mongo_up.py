"""``scanq up`` on MongoDB end to end, on a database the original system filled: every scan reaches a terminal state."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pymongo import MongoClient

from scanq.store.mongo import split_url
from tests.acceptance.conftest import ScanqProcess, free_port, wait_http_ready

pytestmark = pytest.mark.slow

LEGACY_SCANS = 10
NEW_SCANS = 10
DEADLINE_S = 30.0
STOP_WITHIN_S = 20.0  # a generous ceiling on a clean stop (the grace period is 1 s), for loaded machines
TERMINAL = {"Complete", "Error"}


@pytest.fixture
def scanq_up(mongo_database_url: str, tmp_path: Path) -> Iterator[tuple[ScanqProcess, str, str]]:
    """``python -m scanq up`` with the original variables and a ``…/DB?collection=scans`` URL, like ``./run``."""
    ingest_port, status_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SCANQ_DATABASE_URL": mongo_database_url,
        "INGEST_PORT": str(ingest_port),
        "STATUS_PORT": str(status_port),
        "MIN_SLEEP": "0.01",
        "MAX_SLEEP": "0.05",
        "CHANCE_OF_FAILURE": "0.2",
        "SCANQ_REAPER_SECONDS": "0.5",
        "SCANQ_SHUTDOWN_SECONDS": "1",
    }
    log_path = tmp_path / "scanq-up.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [sys.executable, "-m", "scanq", "up", "--workers", "2"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    up = ScanqProcess(args=("up",), popen=popen, log_path=log_path)
    try:
        yield up, f"http://127.0.0.1:{ingest_port}", f"http://127.0.0.1:{status_port}"
    finally:
        up.signal(signal.SIGTERM)
        try:
            popen.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        popen.wait()


def insert_as_the_original_ingest(url: str, count: int) -> list[str]:
    client_url, collection = split_url(url)
    ids = [str(uuid.uuid4()) for _ in range(count)]
    client: MongoClient[dict[str, Any]] = MongoClient(client_url)
    with client:
        client.get_default_database()[collection or "scans"].insert_many(
            [{"_id": i, "status": "Accepted"} for i in ids]
        )
    return ids


def stored_statuses(url: str, ids: list[str]) -> dict[str, str]:
    client_url, collection = split_url(url)
    client: MongoClient[dict[str, Any]] = MongoClient(client_url)
    with client:
        docs = client.get_default_database()[collection or "scans"].find({"_id": {"$in": ids}})
        return {doc["_id"]: doc["status"] for doc in docs}


def test_up_on_mongodb_finishes_original_and_new_scans(
    mongo_database_url: str, scanq_up: tuple[ScanqProcess, str, str]
) -> None:
    legacy_ids = insert_as_the_original_ingest(mongo_database_url, LEGACY_SCANS)
    up, ingest, status = scanq_up
    wait_http_ready(f"{ingest}/healthz", process=up)
    wait_http_ready(f"{status}/readyz", process=up)

    with httpx.Client(timeout=10.0) as client:
        new_ids = [client.get(f"{ingest}/").text.strip() for _ in range(NEW_SCANS)]  # ID=$(curl -s localhost:10550)
        deadline = time.monotonic() + DEADLINE_S
        while True:
            stats = client.get(f"{status}/stats").json()
            counts = stats["counts"]
            if sum(counts.values()) == LEGACY_SCANS + NEW_SCANS and counts["Accepted"] == counts["Running"] == 0:
                break
            assert time.monotonic() < deadline, (stats, up.output())
            time.sleep(0.2)
        answers = {scan_id: client.get(f"{status}/{scan_id}").json() for scan_id in legacy_ids + new_ids}
        listed = client.get(f"{status}/scans", params={"limit": 100}).json()

    assert {answer["status"] for answer in answers.values()} <= TERMINAL, answers
    assert all(answers[scan_id]["history"] for scan_id in legacy_ids)
    assert {scan["scan_id"] for scan in listed["scans"]} == set(legacy_ids + new_ids)
    assert set(stored_statuses(mongo_database_url, legacy_ids).values()) <= TERMINAL
    assert "wake-up: change stream" in up.output() or "standalone: polling" in up.output()

    up.signal(signal.SIGTERM)
    assert up.wait(STOP_WITHIN_S) == 0, up.output()
