"""The HTTP edge of a real ``scanq ingest`` process: header caps, timeouts, the connection cap, early answers.

Raw sockets where the point is what a misbehaving client (or a plain one such
as ``urllib``) sees on the wire; httpx where an ordinary request will do.
"""

from __future__ import annotations

import json
import select
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from scanq.api.limits import LINGER_MAX_BYTES, MAX_HEADER_BYTES, MAX_HEADER_LINE_BYTES, MAX_HEADERS
from tests.acceptance.conftest import ScanqProcess, Spawn, free_port, wait_http_ready

pytestmark = pytest.mark.slow

TIMEOUT_S = 1.0  # the header and body timeouts of the service under test
MAX_BODY_BYTES = 1_048_576
SOCKET_TIMEOUT_S = 10.0
# Bytes the kernels' socket buffers may hold on top of what the server read (loopback autotunes to a few MB).
BUFFER_SLACK_BYTES = 16 * 1024 * 1024
RSS_GROWTH_LIMIT_KB = 50_000


@dataclass(frozen=True)
class Service:
    port: int
    process: ScanqProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def ingest(spawn_for_module: Spawn, tmp_path_factory: pytest.TempPathFactory) -> Service:
    port = free_port()
    env = {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path_factory.mktemp('edge') / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(port),
        "SCANQ_HEADER_TIMEOUT_SECONDS": str(TIMEOUT_S),
        "SCANQ_BODY_TIMEOUT_SECONDS": str(TIMEOUT_S),
    }
    service = Service(port=port, process=spawn_for_module("ingest", env=env))
    wait_http_ready(f"{service.url}/healthz", process=service.process)
    return service


@pytest.fixture(autouse=True)
def still_healthy(request: pytest.FixtureRequest):
    yield
    if "ingest" in request.fixturenames:
        service: Service = request.getfixturevalue("ingest")
        assert httpx.get(f"{service.url}/healthz", timeout=5.0).status_code == 200
        assert "Traceback" not in service.process.output()


def connect(service: Service) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port))
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def read_to_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset ends it too: what arrived before is kept)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def parse(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    """Status, lower-cased headers and body of the first response in ``answer``."""
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body[: int(headers.get("content-length", len(body)))]


def assert_error(answer: bytes, status: int, code: str) -> dict[str, str]:
    assert answer, "the server closed without answering"
    got_status, headers, body = parse(answer)
    assert got_status == status, answer[:500]
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code
    return headers


def send_raw(service: Service, request: bytes) -> bytes:
    with connect(service) as sock:
        sock.sendall(request)
        return read_to_end(sock)


def rss_kb(process: ScanqProcess) -> int:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- 1: invalid UTF-8 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/scans", b'{"target": "\xff"}'),
        ("/scans", b'{"options": {"\xff": 1}}'),
        ("/scans", b'{"target": 1, "options": {"a": "\xc3"}}'),
        ("/scans/batch", b'{"scans": [{"target": "\xed\xa0\x80"}]}'),
        ("/scans/batch", b'{"scans": [{"priority": "x", "target": "\xff"}]}'),
    ],
)
@pytest.mark.parametrize("via", ["hot path", "full stack", "idempotent"])
def test_invalid_utf8_in_a_json_body_is_a_400_on_every_json_route(
    ingest: Service, path: str, body: bytes, via: str
) -> None:
    headers = {"Content-Type": "application/json"}
    if via == "full stack":  # an Origin header skips the hot path (CORS must see the request)
        headers["Origin"] = "http://127.0.0.1:10551"
    if via == "idempotent" and path == "/scans":
        headers["Idempotency-Key"] = "utf8-check"

    response = httpx.post(f"{ingest.url}{path}", content=body, headers=headers, timeout=5.0)

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "malformed_json"


# --- 2: header caps ------------------------------------------------------------------------------------------


def test_a_header_line_over_16_kib_is_a_431(ingest: Service) -> None:
    line = b"X-Big: " + b"a" * MAX_HEADER_LINE_BYTES
    answer = send_raw(ingest, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + line + b"\r\n\r\n")

    headers = assert_error(answer, 431, "header_too_large")
    assert headers["connection"] == "close"


def test_more_than_100_headers_is_a_431(ingest: Service) -> None:
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1))
    answer = send_raw(ingest, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + many + b"\r\n")

    assert_error(answer, 431, "too_many_headers")


def test_exactly_100_headers_are_accepted(ingest: Service) -> None:
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS - 2))  # with Host and Connection: 100
    answer = send_raw(ingest, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + many + b"\r\n")

    assert parse(answer)[0] == 200


def test_a_header_section_over_64_kib_in_one_piece_is_a_431(ingest: Service) -> None:
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    answer = send_raw(ingest, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n")

    assert_error(answer, 431, "headers_too_large")


def test_a_pipelined_request_is_held_to_the_same_caps_and_answered_in_turn(ingest: Service) -> None:
    first = b"POST /scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    lines = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(70))
    second = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + lines + b"\r\n"

    answer = send_raw(ingest, first + second)  # one write: the second arrives with the first's body

    accepted, _, refused = answer.partition(b"HTTP/1.1 431")
    assert parse(accepted)[0] == 202
    assert_error(b"HTTP/1.1 431" + refused, 431, "headers_too_large")


def test_an_endless_header_is_cut_off_without_buffering_it(ingest: Service) -> None:
    rss_before = rss_kb(ingest.process)
    sent = 0
    with connect(ingest) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ")
        try:
            while sent < 100 * 1024 * 1024:  # the 100 MB header of the report
                sock.sendall(b"a" * 65536)
                sent += 65536
        except OSError:
            pass  # the server closed after draining what it allows
        answer = read_to_end(sock)

    assert_error(answer, 431, "headers_too_large")
    assert sent < MAX_HEADER_BYTES + LINGER_MAX_BYTES + BUFFER_SLACK_BYTES
    assert rss_kb(ingest.process) - rss_before < RSS_GROWTH_LIMIT_KB


def test_a_100k_character_url_is_a_json_414(ingest: Service) -> None:
    answer = send_raw(ingest, b"GET /scans?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")

    assert_error(answer, 414, "uri_too_long")


def test_bytes_that_are_not_http_get_a_json_400(ingest: Service) -> None:
    answer = send_raw(ingest, b"NOT HTTP AT ALL\r\n\r\n")

    assert_error(answer, 400, "bad_request")


# --- 3: timeouts and the connection cap ------------------------------------------------------------------------


def trickle(sock: socket.socket, pieces: list[bytes]) -> float:
    """Send one piece every 0.2 s until the server answers; return when it did (seconds from the first piece)."""
    started = time.monotonic()
    for piece in pieces:
        readable, _, _ = select.select([sock], [], [], 0.2)
        if readable:
            return time.monotonic() - started
        sock.sendall(piece)
    raise AssertionError("no answer while trickling")


def test_headers_that_trickle_in_time_out_with_a_408(ingest: Service) -> None:
    with connect(ingest) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # A header every 0.2 s: never complete, never idle.
        answered_after_s = trickle(sock, [b"X-%d: 1\r\n" % number for number in range(50)])
        answer = read_to_end(sock)

    assert_error(answer, 408, "request_timeout")
    assert TIMEOUT_S - 0.3 < answered_after_s < TIMEOUT_S + 1.5


def test_a_body_that_trickles_times_out_with_a_408(ingest: Service) -> None:
    with connect(ingest) as sock:
        sock.sendall(b"POST /scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n")
        sock.sendall(b"Content-Length: 100\r\n\r\n{")
        answered_after_s = trickle(sock, [b" "] * 50)
        answer = read_to_end(sock)

    assert_error(answer, 408, "request_timeout")
    assert TIMEOUT_S - 0.3 < answered_after_s < TIMEOUT_S + 1.5


def read_one_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length (head and body), leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_the_time_limits_hold_on_a_kept_alive_connection_after_many_requests(ingest: Service) -> None:
    # One timer watches a connection's limits, re-armed as they move: the headers of a later request still time
    # out on time, after requests that each set and cleared their header, body and keep-alive deadlines.
    with connect(ingest) as sock:
        for _ in range(50):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_one_answer(sock).startswith(b"HTTP/1.1 200 ")
        time.sleep(TIMEOUT_S * 1.5)  # past the header deadline set when the connection opened
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answered_after_s = trickle(sock, [b"X-%d: 1\r\n" % number for number in range(50)])
        answer = read_to_end(sock)

    assert_error(answer, 408, "request_timeout")
    assert TIMEOUT_S - 0.3 < answered_after_s < TIMEOUT_S + 1.5


def test_an_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(ingest: Service) -> None:
    with connect(ingest) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_one_answer(sock).startswith(b"HTTP/1.1 200 ")
        idle_from = time.monotonic()
        assert read_to_end(sock) == b""  # uvicorn's timeout_keep_alive: 5 s
        idle_s = time.monotonic() - idle_from

    assert 4.5 < idle_s < 8.0


def test_a_head_request_gets_its_head_and_no_body(ingest: Service) -> None:
    # The edge holds an answer's head until its body is written; a HEAD answer has none, and must still arrive.
    with connect(ingest) as sock:
        sock.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        after = read_one_answer(sock)

    head, _, rest = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length:" in head.lower()
    assert rest == b""
    assert after.startswith(b"HTTP/1.1 200 ")


def test_a_connection_that_sends_nothing_is_closed(ingest: Service) -> None:
    started = time.monotonic()
    with connect(ingest) as sock:
        assert read_to_end(sock) == b""
    assert time.monotonic() - started < TIMEOUT_S + 2.0


def test_connections_past_the_cap_are_closed_and_logged(spawn: Spawn, tmp_path: Path) -> None:
    port = free_port()
    env = {
        "SCANQ_DATABASE_URL": f"sqlite:///{tmp_path / 'scanq.db'}",
        "SCANQ_INGEST_PORT": str(port),
        "SCANQ_MAX_CONNECTIONS": "5",
    }
    service = Service(port=port, process=spawn("ingest", env=env))
    wait_http_ready(f"{service.url}/healthz", process=service.process)
    held = [connect(service) for _ in range(5)]
    try:
        time.sleep(0.2)  # let the server accept all five
        with connect(service) as sixth:
            sixth.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert read_to_end(sixth) == b""
    finally:
        for sock in held:
            sock.close()

    service.process.wait_for_output("connection limit reached: 5 connections open (max_connections=5)")
    time.sleep(0.2)  # the five closes reach the server
    assert httpx.get(f"{service.url}/healthz", timeout=5.0).status_code == 200


# --- 4: a 413 reaches plain clients ----------------------------------------------------------------------------


def test_a_413_reaches_a_client_that_sends_its_whole_body_before_reading(ingest: Service) -> None:
    body = b"x" * (2 * MAX_BODY_BYTES)
    with connect(ingest) as sock:
        sock.sendall(
            b"POST /scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.3)  # the answer is out before the body is sent
        sock.sendall(body)
        answer = read_to_end(sock)

    assert_error(answer, 413, "body_too_large")


def test_urllib_sees_the_413_for_a_2_mb_body(ingest: Service) -> None:
    outcomes: dict[object, int] = {}
    for _ in range(30):
        request = urllib.request.Request(
            f"{ingest.url}/scans", data=b"x" * 2_000_000, headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(request, timeout=SOCKET_TIMEOUT_S)
            outcome: object = "accepted"
        except urllib.error.HTTPError as exc:
            outcome = exc.code
        except OSError as exc:
            outcome = type(exc).__name__
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    assert outcomes == {413: 30}


def test_a_413_closes_a_kept_alive_connection_once_the_body_is_drained(ingest: Service) -> None:
    body = b"x" * (2 * MAX_BODY_BYTES)
    with connect(ingest) as sock:
        sock.sendall(
            b"POST /scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)
        answer = read_to_end(sock)

    headers = assert_error(answer, 413, "body_too_large")
    assert headers["connection"] == "close"


def test_after_another_early_answer_a_kept_alive_connection_serves_the_next_request(ingest: Service) -> None:
    # No route: answered before the body is read, without Connection: close. The body is drained, then served on.
    body = b"x" * (2 * MAX_BODY_BYTES)
    with connect(ingest) as sock:
        sock.sendall(
            b"POST /no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        sock.sendall(body)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = read_to_end(sock)

    first, _, second = answer.partition(b"HTTP/1.1 200")
    assert_error(first, 404, "not_found")
    assert b'{"status":"ok"}' in second


def test_the_rest_of_a_refused_body_is_read_only_up_to_a_bound(ingest: Service) -> None:
    declared = 1024 * 1024 * 1024
    sent = 0
    with connect(ingest) as sock:
        sock.sendall(
            b"POST /scans HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % declared
        )
        try:
            while sent < declared:
                sock.sendall(b"x" * 65536)
                sent += 65536
        except OSError:
            pass
        answer = read_to_end(sock)

    assert_error(answer, 413, "body_too_large")
    assert sent < LINGER_MAX_BYTES + BUFFER_SLACK_BYTES
