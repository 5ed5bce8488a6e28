"""Tokens and quotas across real processes: revocation reaches every ingest process, ``auto`` mode, quotas.

Tokens and limits are made with the ``scanq tokens`` / ``scanq tenants`` commands, as an operator would.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from scanq.auth import CACHE_S
from scanq.store import open_store
from tests.acceptance.conftest import Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 60.0
# The promise: a revoked token is refused by every process within 1 s of the revocation.
REVOCATION_BOUND_S = 1.0


def scanq(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run one ``scanq`` operator command on the store; fail with its output unless it succeeds."""
    done = subprocess.run(
        [sys.executable, "-m", "scanq", *args],
        env={**os.environ, "SCANQ_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr
    return done


def create_token(database_url: str, tenant: str, scopes: str = "submit,read,cancel") -> tuple[str, str]:
    """A new token's secret and id (the id is in the command's stderr line)."""
    done = scanq(database_url, "tokens", "create", "--tenant", tenant, "--scopes", scopes)
    token_id = next(word for word in done.stderr.split() if word.startswith("tok_"))
    return done.stdout.strip(), token_id


def start_ingest(spawn: Spawn, database_url: str, *extra: str, auth: str = "tokens") -> str:
    port = free_port()
    env = {"SCANQ_DATABASE_URL": database_url, "SCANQ_AUTH": auth, "SCANQ_INGEST_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/readyz", process=spawn("ingest", *extra, env=env))
    return url


def submit(url: str, secret: str, body: object = None, path: str = "/scans") -> httpx.Response:
    return httpx.post(
        url + path, json=body or {}, headers={"Authorization": f"Bearer {secret}"}, timeout=REQUEST_TIMEOUT_S
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'scanq.db'}"


def test_a_revoked_token_is_refused_by_every_ingest_process_within_a_second(spawn: Spawn, sqlite_store: str) -> None:
    secret, token_id = create_token(sqlite_store, "acme")
    first, second = start_ingest(spawn, sqlite_store), start_ingest(spawn, sqlite_store)
    # Both processes have the token in their cache now.
    assert submit(first, secret).status_code == 202
    assert submit(second, secret).status_code == 202

    scanq(sqlite_store, "tokens", "revoke", token_id)
    time.sleep(REVOCATION_BOUND_S)

    for url in (first, second):
        refused = submit(url, secret)
        assert refused.status_code == 401
        assert refused.json()["error"] == {"code": "unauthenticated", "message": "this API token is revoked"}
        assert refused.headers["WWW-Authenticate"] == 'Bearer realm="scanq", error="invalid_token"'
    assert CACHE_S < REVOCATION_BOUND_S


def test_tokens_list_shows_when_a_token_was_last_used_and_never_its_secret(spawn: Spawn, sqlite_store: str) -> None:
    secret, token_id = create_token(sqlite_store, "acme")
    url = start_ingest(spawn, sqlite_store)
    assert submit(url, secret).status_code == 202

    # Last-used times are written in batches (about once a second): wait for it with a generous deadline.
    deadline = time.monotonic() + 30
    while (last_used := asyncio.run(_last_used(sqlite_store, token_id))) is None and time.monotonic() < deadline:
        submit(url, secret)
        time.sleep(0.5)
    listing = scanq(sqlite_store, "tokens", "list").stdout

    assert last_used is not None
    assert last_used.strftime("%Y-%m-%d %H:%M:%SZ") in listing
    assert secret not in listing


async def _last_used(database_url: str, token_id: str) -> datetime | None:
    async with open_store(database_url) as store:
        (token,) = [t for t in await store.list_tokens() if t.token_id == token_id]
    return token.last_used_at


def test_auto_mode_on_a_public_address_requires_tokens(spawn: Spawn, sqlite_store: str) -> None:
    port = free_port()
    process = spawn(
        "ingest",
        env={"SCANQ_DATABASE_URL": sqlite_store, "SCANQ_HOST": "0.0.0.0", "SCANQ_INGEST_PORT": str(port)},
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/readyz", process=process)
    secret, _ = create_token(sqlite_store, "acme")

    refused = httpx.post(f"{url}/scans", json={}, timeout=REQUEST_TIMEOUT_S)
    accepted = submit(url, secret)

    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"] == 'Bearer realm="scanq"'
    assert accepted.status_code == 202 and accepted.json()["tenant"] == "acme"


def test_auth_off_on_a_public_address_refuses_to_start_in_one_line(sqlite_store: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "scanq", "ingest", "--host", "0.0.0.0", "--auth", "off"],
        env={**os.environ, "SCANQ_DATABASE_URL": sqlite_store},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--insecure-no-auth" in lines[0] and "0.0.0.0" in lines[0], done.stderr


def test_auth_off_on_a_public_address_starts_with_insecure_no_auth(spawn: Spawn, sqlite_store: str) -> None:
    port = free_port()
    env = {"SCANQ_DATABASE_URL": sqlite_store, "SCANQ_INGEST_PORT": str(port)}
    process = spawn("ingest", "--host", "0.0.0.0", "--auth", "off", "--insecure-no-auth", env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/readyz", process=process)

    created = httpx.post(f"{url}/scans", json={}, timeout=REQUEST_TIMEOUT_S)

    assert created.status_code == 202 and created.json()["tenant"] == "default"


def test_the_queued_limit_holds_across_two_ingest_processes(spawn: Spawn, sqlite_store: str) -> None:
    secret, _ = create_token(sqlite_store, "acme")
    other, _ = create_token(sqlite_store, "globex")
    scanq(sqlite_store, "tenants", "set", "acme", "--max-queued", "3")
    first, second = start_ingest(spawn, sqlite_store), start_ingest(spawn, sqlite_store)

    answers = [submit(first, secret), submit(second, secret), submit(first, secret)]
    over = submit(second, secret)
    batch = submit(first, secret, {"scans": [{}, {}]}, path="/scans/batch")

    assert [a.status_code for a in answers] == [202, 202, 202]
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.json()["error"]["code"] == "quota_exceeded"
    assert "at most 3 unfinished scans" in over.json()["error"]["message"]
    assert batch.status_code == 429
    assert submit(second, other).status_code == 202  # another tenant is not held back
    status = spawn_status(spawn, sqlite_store)
    counts = httpx.get(
        f"{status}/stats", headers={"Authorization": f"Bearer {secret}"}, timeout=REQUEST_TIMEOUT_S
    ).json()["counts"]
    assert counts["Accepted"] == 3  # nothing of the refused batch was stored


def test_a_batch_that_would_cross_the_queued_limit_is_refused_whole(spawn: Spawn, sqlite_store: str) -> None:
    secret, _ = create_token(sqlite_store, "acme")
    scanq(sqlite_store, "tenants", "set", "acme", "--max-queued", "5")
    url = start_ingest(spawn, sqlite_store)

    assert submit(url, secret, {"scans": [{}, {}, {}]}, path="/scans/batch").status_code == 202
    crossing = submit(url, secret, {"scans": [{}, {}, {}]}, path="/scans/batch")
    fitting = submit(url, secret, {"scans": [{}, {}]}, path="/scans/batch")

    assert crossing.status_code == 429
    assert "3 more asked" in crossing.json()["error"]["message"]
    assert fitting.status_code == 202


def test_the_rate_limit_answers_429_with_retry_after(spawn: Spawn, sqlite_store: str) -> None:
    secret, _ = create_token(sqlite_store, "acme")
    # One submission per 100 s: the second one is refused however slow this machine is.
    scanq(sqlite_store, "tenants", "set", "acme", "--rate", "0.01")
    url = start_ingest(spawn, sqlite_store)

    first, second = submit(url, secret), submit(url, secret)

    assert first.status_code == 202
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "quota_exceeded"
    assert "0.01 scans per second" in second.json()["error"]["message"]
    assert 1 <= int(second.headers["Retry-After"]) <= 100


def spawn_status(spawn: Spawn, database_url: str) -> str:
    port = free_port()
    env = {"SCANQ_DATABASE_URL": database_url, "SCANQ_AUTH": "tokens", "SCANQ_STATUS_PORT": str(port)}
    url = f"http://127.0.0.1:{port}"
    wait_http_ready(f"{url}/readyz", process=spawn("status", env=env))
    return url


def test_tls_cert_and_key_serve_https_only(spawn: Spawn, sqlite_store: str, tmp_path: Path) -> None:
    import trustme

    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    cert, key, ca = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    for blob in issued.cert_chain_pems:
        blob.write_to_path(str(cert), append=True)
    issued.private_key_pem.write_to_path(str(key))
    authority.cert_pem.write_to_path(str(ca))
    port = free_port()
    env = {"SCANQ_DATABASE_URL": sqlite_store, "SCANQ_INGEST_PORT": str(port)}
    process = spawn("ingest", "--tls-cert", str(cert), "--tls-key", str(key), env=env)
    process.wait_for_output(f"listening on https://127.0.0.1:{port}")
    trust = ssl.create_default_context(cafile=str(ca))
    # The line is logged once the socket is bound; uvicorn listens on it a moment later.
    deadline = time.monotonic() + 30
    while True:
        try:
            created = httpx.post(f"https://127.0.0.1:{port}/scans", json={}, verify=trust, timeout=REQUEST_TIMEOUT_S)
            break
        except httpx.ConnectError:
            assert time.monotonic() < deadline, process.output()
            time.sleep(0.1)
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://127.0.0.1:{port}/scans", json={}, timeout=REQUEST_TIMEOUT_S)

    assert created.status_code == 202


def test_a_key_that_does_not_load_stops_the_start_in_one_line(sqlite_store: str, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("not a certificate\n")
    key.write_text("not a key\n")
    done = subprocess.run(
        [sys.executable, "-m", "scanq", "ingest", "--tls-cert", str(cert), "--tls-key", str(key)],
        env={**os.environ, "SCANQ_DATABASE_URL": sqlite_store, "SCANQ_INGEST_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    assert done.returncode == 78
    assert "cannot serve HTTPS" in done.stderr.strip().splitlines()[-1]
