"""The ports lab: protocol speakers on loopback addresses, at their standard ports.

Real servers where the machine has them (PostgreSQL, MariaDB, Redis, RabbitMQ,
Mosquitto and NATS run on 127.0.0.1; a second Redis and Mosquitto with
authentication and a SecantusDB are started here); faithful fakes for the
rest. Each speaker sits on its protocol's standard port, on its own loopback
address (127.0.0.2-4), because nmap sends its rarer probes (MongoDB, Redis,
Memcached, MQTT) only to those ports, and 127.0.0.1 keeps the machine's own.

The fakes run on an event loop in a thread of their own, so the blocking
nmap run and scanq's asyncio scans can both reach them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

FAKES = "127.0.0.2"
AUTH = "127.0.0.3"
TLS_ONLY = "127.0.0.4"
START_TIMEOUT_S = 30.0

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# --- fake speakers ----------------------------------------------------------------------------


async def _read_line(reader: asyncio.StreamReader, timeout_s: float = 5.0) -> bytes:
    with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        async with asyncio.timeout(timeout_s):
            return await reader.readline()
    return b""


async def telnet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Linux telnetd (inetutils): asks for terminal type, speed, X display and environment, then a login prompt."""
    writer.write(b"\xff\xfd\x18\xff\xfd\x20\xff\xfd\x23\xff\xfd\x27")
    await writer.drain()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1.0):
            await reader.read(64)  # the client's WILL/WONT answers
    writer.write(b"\r\nDebian GNU/Linux 12\r\nlab login: ")
    await writer.drain()
    await _read_line(reader)


async def ssh(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")
    await writer.drain()
    await _read_line(reader)
    writer.write(b"Invalid SSH identification string.\r\n")


async def ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """vsftpd: a greeting, then "please login" to anything."""
    writer.write(b"220 (vsFTPd 3.0.3)\r\n")
    await writer.drain()
    while line := await _read_line(reader):
        writer.write(b"530 Please login with USER and PASS.\r\n")
        await writer.drain()
        if line.upper().startswith(b"QUIT"):
            break


async def smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 mail.shop.test ESMTP Postfix (Debian/GNU)\r\n")
    await writer.drain()
    while line := await _read_line(reader):
        writer.write(b"502 5.5.2 Error: command not recognized\r\n" if line.strip() else b"500 5.5.2 Error\r\n")
        await writer.drain()


async def vnc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"RFB 003.008\n")
    await writer.drain()
    await _read_line(reader)


async def memcached(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Memcached's text protocol: ``version``, ``stats``, ``ERROR`` to anything else.

    Like the real server, the answers to every command that arrived together leave in one write.
    """
    pending = b""
    while True:
        chunk = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                chunk = await reader.read(4096)
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        answers = b"".join(_memcached_answer(line.strip()) for line in lines)
        if b"QUIT" in answers:
            return
        writer.write(answers)
        await writer.drain()


def _memcached_answer(line: bytes) -> bytes:
    command = line.split(b" ", 1)[0].lower()
    if command == b"version":
        return b"VERSION 1.6.18\r\n"
    if command == b"stats":
        return b"STAT pid 4242\r\nSTAT uptime 3600\r\nSTAT version 1.6.18\r\nEND\r\n"
    if command == b"quit":
        return b"QUIT"
    return b"ERROR\r\n"


def _es_root(http_version: str) -> bytes:
    # Elasticsearch pretty-prints its root document (Jackson's " : " style).
    body = (
        b'{\n  "name" : "lab-node-1",\n  "cluster_name" : "lab",\n  "cluster_uuid" : "q1w2e3r4t5y6u7i8o9p0aa",\n'
        b'  "version" : {\n    "number" : "8.11.3",\n    "build_flavor" : "default",\n    "build_type" : "deb",\n'
        b'    "lucene_version" : "9.8.0",\n    "minimum_wire_compatibility_version" : "7.17.0",\n'
        b'    "minimum_index_compatibility_version" : "7.0.0"\n  },\n  "tagline" : "You Know, for Search"\n}\n'
    )
    head = (
        f"{http_version} 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _es_unauthorized(http_version: str) -> bytes:
    body = (
        b'{"error":{"root_cause":[{"type":"security_exception","reason":"missing authentication credentials for '
        b'REST request [/]","header":{"WWW-Authenticate":["Basic realm=\\"security\\" charset=\\"UTF-8\\""]}}],'
        b'"type":"security_exception","reason":"missing authentication credentials for REST request [/]"},"status":401}'
    )
    head = (
        f'{http_version} 401 Unauthorized\r\nWWW-Authenticate: Basic realm="security" charset="UTF-8"\r\n'
        f"content-type: application/json; charset=UTF-8\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def http_server(answer: Callable[[str], bytes]) -> Handler:
    """An HTTP/1.x server answering every request with ``answer(http_version)``, then closing."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = await _read_line(reader)
        if not request_line:
            return  # like a real server: nothing asked, nothing said
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            return
        while await _read_line(reader) not in (b"\r\n", b"\n", b""):
            pass
        writer.write(answer(parts[2]))

    return handle


def nginx(http_version: str) -> bytes:
    body = b"<html><head><title>Welcome to nginx!</title></head><body>Welcome</body></html>\n"
    head = (
        f"{http_version} 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/html\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


elasticsearch = http_server(_es_root)
elasticsearch_with_auth = http_server(_es_unauthorized)
web = http_server(nginx)


@dataclass
class FakeSpeakers:
    """Asyncio servers on an event loop in a thread of their own."""

    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    servers: list[asyncio.Server] = field(default_factory=list)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def serve(self, handler: Handler, host: str, port: int, *, tls: ssl.SSLContext | None = None) -> None:
        async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
                await handler(reader, writer)
                await writer.drain()
            writer.close()

        async def start() -> asyncio.Server:
            return await asyncio.start_server(guarded, host, port, ssl=tls, reuse_address=True)

        self.servers.append(asyncio.run_coroutine_threadsafe(start(), self.loop).result(10))

    def close(self) -> None:
        async def stop() -> None:
            for server in self.servers:
                server.close()
            for server in self.servers:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2):
                        await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(5)
        self.loop.close()


# --- real servers started here ------------------------------------------------------------------


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited: {log.read_text(errors='replace')[-500:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{process.args!r} did not listen on {host}:{port} within {START_TIMEOUT_S:g}s")


@contextlib.contextmanager
def real_server(command: list[str], host: str, port: int, directory: Path, name: str) -> Iterator[None]:
    """Run ``command`` until the block ends; it must listen on ``host:port``."""
    log = directory / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=directory, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(host, port, process, log)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def redis_with_password(directory: Path) -> list[str]:
    return [
        shutil.which("redis-server") or "redis-server",
        "--bind", AUTH, "--port", "6379", "--requirepass", "lab-secret", "--save", "", "--appendonly", "no",
        "--dir", str(directory), "--protected-mode", "yes",
    ]  # fmt: skip


def mosquitto_with_password(directory: Path) -> list[str]:
    # No anonymous clients and no password file: every CONNECT is refused as not authorised.
    config = directory / "mosquitto.conf"
    config.write_text(f"listener 1883 {AUTH}\nallow_anonymous false\npersistence false\n")
    return [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)]


def secantus(directory: Path) -> list[str]:
    config = directory / "secantusd.toml"
    config.write_text("")  # no search of ~/.secantus or /etc
    return [
        sys.executable, "-m", "secantus", "--config", str(config), "--host", FAKES, "--port", "27017",
        "--storage-path", str(directory / "data"), "--log-level", "WARNING", "--standalone",
    ]  # fmt: skip


def tls_requiring_client_cert(directory: Path) -> ssl.SSLContext:
    """A server context that asks every client for a certificate from a CA nobody has (mutual TLS)."""
    import trustme

    ca, client_ca = trustme.CA(), trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("redis.shop.test").configure_cert(ctx)
    client_ca.configure_trust(ctx)
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def tls_server(directory: Path) -> ssl.SSLContext:
    import trustme

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("admin.shop.test").configure_cert(ctx)
    return ctx


def to_json(value: object) -> str:
    return json.dumps(value, sort_keys=True)
