"""``CycleTransport``: a response head with a Content-Length leaves with its body in one write; nothing is lost."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
from dataclasses import dataclass, field
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from scanq.api.edge_parts import CycleTransport, DeadlineTimer

UVICORN_RESPONSE_END_SHA256 = "3ad640e868d003eaa9cbf4e84313a2a51bcd40d521cf844b920967432fd05e92"


@dataclass
class FakeCycle:
    """The fields of uvicorn's ``RequestResponseCycle`` the transport reads."""

    response_started: bool = False
    chunked_encoding: bool | None = None
    response_complete: bool = False


@dataclass
class FakeConnection:
    cycle: Any = None
    closes: int = 0

    def close_after_request(self) -> None:
        self.closes += 1


@dataclass
class FakeTransport:
    writes: list[bytes] = field(default_factory=list)
    eofs: int = 0

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def write_eof(self) -> None:
        self.eofs += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def make() -> tuple[CycleTransport, FakeConnection, FakeTransport]:
    connection, transport = FakeConnection(), FakeTransport()
    return CycleTransport(connection, transport), connection, transport  # type: ignore[arg-type]


def start(connection: FakeConnection, *, chunked: bool | None) -> FakeCycle:
    cycle = FakeCycle(response_started=True, chunked_encoding=chunked)
    connection.cycle = cycle
    return cycle


def test_a_head_with_content_length_goes_out_with_the_body_in_one_write() -> None:
    sender, connection, transport = make()
    start(connection, chunked=False)
    sender.write(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n")
    assert transport.writes == []
    sender.write(b"{}")
    assert transport.writes == [b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}"]


def test_each_response_on_a_connection_is_joined_and_in_order() -> None:
    sender, connection, transport = make()
    for body in (b"a", b"b"):
        start(connection, chunked=False)
        sender.write(b"HEAD/" + body)
        sender.write(body)
    assert transport.writes == [b"HEAD/aa", b"HEAD/bb"]


def test_a_head_without_a_body_write_goes_out_on_flush() -> None:
    # A HEAD request: uvicorn writes the head and then no body; the edge flushes when the response completes.
    sender, connection, transport = make()
    start(connection, chunked=False)
    sender.write(b"head")
    sender.flush()
    sender.flush()
    assert transport.writes == [b"head"]


def test_a_streamed_answer_is_never_held() -> None:
    sender, connection, transport = make()
    start(connection, chunked=True)
    sender.write(b"head")
    assert transport.writes == [b"head"]
    sender.write(b"5\r\nchunk\r\n")
    assert transport.writes == [b"head", b"5\r\nchunk\r\n"]


def test_writes_before_the_response_starts_are_not_held() -> None:
    # "100 Continue" is written while the request body is read, before any response head.
    sender, connection, transport = make()
    connection.cycle = FakeCycle(response_started=False)
    sender.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_close_and_write_eof_send_a_held_head_first() -> None:
    sender, connection, transport = make()
    start(connection, chunked=False)
    sender.write(b"head")
    sender.close()
    assert transport.writes == [b"head"]
    assert connection.closes == 1
    start(connection, chunked=False)
    sender.write(b"head2")
    sender.write_eof()
    assert transport.writes == [b"head", b"head2"]
    assert transport.eofs == 1


def test_other_attributes_are_the_transports() -> None:
    sender, _, _ = make()
    assert sender.get_extra_info("peername") == "info:peername"
    assert sender.is_closing() is False


async def test_the_deadline_timer_fires_once_at_the_earliest_deadline_it_was_armed_for() -> None:
    loop = asyncio.get_running_loop()
    fired: list[float] = []
    timer = DeadlineTimer(loop, lambda: fired.append(loop.time()))
    late = timer.deadline(10.0)
    early = timer.deadline(0.05)  # moves the timer earlier
    timer.deadline(5.0)  # later than it is armed for: no change
    assert early < late and timer.is_armed

    await asyncio.sleep(0.2)

    assert len(fired) == 1 and fired[0] >= early - 0.002  # libuv rounds to the millisecond
    assert not timer.is_armed


async def test_a_cancelled_deadline_timer_does_not_fire() -> None:
    fired: list[bool] = []
    timer = DeadlineTimer(asyncio.get_running_loop(), lambda: fired.append(True))
    timer.deadline(0.01)
    timer.cancel()
    await asyncio.sleep(0.05)
    assert fired == [] and not timer.is_armed


def test_the_copied_uvicorn_response_end_is_still_uvicorns() -> None:
    # EdgeProtocol._complete_response copies uvicorn's on_response_complete (arming the keep-alive limit as a
    # deadline instead of a timer); a new uvicorn that changes it must change the copy too.
    source = inspect.getsource(HttpToolsProtocol.on_response_complete)
    source += inspect.getsource(HttpToolsProtocol._unset_keepalive_if_required)
    assert hashlib.sha256(source.encode()).hexdigest() == UVICORN_RESPONSE_END_SHA256, (
        "uvicorn's on_response_complete changed: update scanq.api.edge.EdgeProtocol._complete_response"
    )
