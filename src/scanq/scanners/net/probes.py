"""Which service answers on an open port: the greeting, then short protocol-appropriate probes.

1. On the first connection: a port with a usual silent service (Redis on
   6379, PostgreSQL on 5432, ...) is sent that protocol's probe at once;
   any other port is given the banner timeout to say something first (SSH,
   MySQL, Telnet, FTP, SMTP, VNC and NATS greet). A greeting is recognised
   whatever was sent.
2. Still unknown: every other probe at once, each on its own connection and
   with the banner timeout again once connected (waiting for one of the
   target's socket slots is not counted); the first in ``FALLBACK`` order
   that recognises its protocol wins.

So a port costs about twice the banner timeout at most, plus connecting.
Each probe reads until its answer is complete, the time is up, or the
service has been quiet for ``QUIET_S`` after saying something.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from scanq.scanners.net import httpwire, mongowire
from scanq.scanners.net import servicewire as wire
from scanq.scanners.net.connect import ConnectFailed, Connection, Session, probing_context
from scanq.scanners.net.servicewire import AUTH, OPEN, Identity

QUIET_S = 0.3
CLOSE_GRACE_S = 1.0
MAX_ANSWER_BYTES = 16 * 1024
# The protocol usually found on a port and silent until asked (greeting services need no hint).
PORT_HINTS = {
    80: "http",
    443: "tls",
    1883: "mqtt",
    4443: "tls",
    5432: "postgresql",
    5672: "amqp",
    6379: "redis",
    8000: "http",
    8080: "http",
    8443: "tls",
    8883: "tls",
    9200: "http",
    10443: "tls",
    11211: "memcached",
    27017: "mongodb",
}
FALLBACK = ("tls", "http", "redis", "postgresql", "mongodb", "mqtt", "amqp", "memcached")
# Protocols looked for inside TLS: the port's usual one, else HTTP.
_INSIDE_TLS = frozenset({"http", "redis", "mongodb", "mqtt", "amqp", "memcached"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Found:
    """What the probes learnt: the service, or only the first words the port said."""

    identity: Identity | None
    first_words: bytes = b""


class Talk:
    """Requests and answers on one connection, within one deadline."""

    def __init__(self, conn: Connection, *, deadline: float) -> None:
        self.conn = conn
        self.deadline = deadline
        self.received = bytearray()

    async def ask(self, payload: bytes | None, *, until: Callable[[bytes], bool], quiet: bool = True) -> bytes:
        """Send ``payload`` (None: nothing) and read until ``until(answer)``, the deadline or EOF.

        With ``quiet``, also once the service has said something and then nothing for ``QUIET_S``; answers
        that come in several messages (which a loaded server may space out) are read without it.
        """
        if payload:
            self.conn.writer.write(payload)
            await self.conn.writer.drain()
        answer = bytearray()
        loop = asyncio.get_running_loop()
        while len(answer) < MAX_ANSWER_BYTES and not until(bytes(answer)):
            left = self.deadline - loop.time()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(min(left, QUIET_S) if answer and quiet else left):
                    chunk = await self.conn.reader.read(4096)
            except TimeoutError:
                break
            if not chunk:
                break
            answer += chunk
        self.received += answer
        return bytes(answer)


def _line(data: bytes) -> bool:
    return data.endswith(b"\n")


def _any(data: bytes) -> bool:
    return bool(data)


def _pg_message(data: bytes) -> bool:
    return len(data) >= 5 and len(data) >= 1 + int.from_bytes(data[1:5], "big")


def _amqp_frame(data: bytes) -> bool:
    if data.startswith(b"AMQP"):
        return len(data) >= 8
    return len(data) >= 7 and len(data) >= 8 + int.from_bytes(data[3:7], "big")


def _redis_done(data: bytes) -> bool:
    if data and data[:1] not in b"+-$*:":
        return True  # not RESP: no need to wait for more
    return (data.startswith(b"-") and _line(data)) or wire.is_redis_info_complete(data)


async def _redis(talk: Talk) -> Identity | None:
    answer = await talk.ask(wire.REDIS_PING + wire.REDIS_INFO, until=_redis_done, quiet=False)
    found = wire.read_redis(answer)
    return wire.redis_info(found, answer) if found is not None and found.access == OPEN else found


async def _postgresql(talk: Talk, session: Session) -> Identity | None:
    ssl_answer = await talk.ask(wire.POSTGRES_SSL_REQUEST, until=_any)
    if ssl_answer == b"N":
        return wire.read_postgres(await talk.ask(wire.postgres_startup(), until=_pg_message), ssl_answer=ssl_answer)
    if ssl_answer != b"S":
        return wire.read_postgres(ssl_answer)
    # The server would start TLS now; ask again in clear on a new connection.
    async with session.connect(port=talk.conn.port) as conn:
        again = Talk(conn, deadline=talk.deadline)
        return wire.read_postgres(await again.ask(wire.postgres_startup(), until=_pg_message), ssl_answer=ssl_answer)


async def _mongodb(talk: Talk) -> Identity | None:
    answer = await talk.ask(mongowire.probe(), until=mongowire.is_complete_or_foreign, quiet=False)
    return mongowire.read_mongodb(answer)


async def _mqtt(talk: Talk) -> Identity | None:
    found = wire.read_mqtt(await talk.ask(wire.mqtt_connect(), until=lambda d: len(d) >= 4))
    if found is None or found.access != OPEN:
        return found
    # Mosquitto (and others) publish their version on a $SYS topic to any subscriber.
    answer = await talk.ask(wire.MQTT_SUBSCRIBE_VERSION, until=wire.is_mqtt_version_complete)
    talk.conn.writer.write(wire.MQTT_DISCONNECT)
    return wire.mqtt_broker_version(found, answer)


async def _amqp(talk: Talk) -> Identity | None:
    return wire.read_amqp(await talk.ask(wire.AMQP_HEADER, until=_amqp_frame))


async def _memcached(talk: Talk) -> Identity | None:
    return wire.read_memcached(await talk.ask(wire.MEMCACHED_VERSION, until=_line))


def _http_request(session: Session) -> bytes:
    return f"GET / HTTP/1.0\r\nHost: {session.host}\r\nUser-Agent: {httpwire.USER_AGENT}\r\n\r\n".encode()


def _http_done(data: bytes) -> bool:
    """The whole response (by Content-Length) is in, or the start is not HTTP; else read to EOF or the deadline."""
    if len(data) >= 5 and not data.startswith(b"HTTP/"):
        return True
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value.strip())
    return False


async def _http(talk: Talk, session: Session) -> Identity | None:
    return read_http(await talk.ask(_http_request(session), until=_http_done, quiet=False))


def read_http(answer: bytes) -> Identity | None:
    """An HTTP response; Elasticsearch's root document (or its security refusal) is told apart."""
    head, _, body = answer.partition(b"\r\n\r\n")
    try:
        response = httpwire.parse_head(head)
    except httpwire.HttpError:
        return None
    elastic = _elasticsearch(response, body)
    if elastic is not None:
        return elastic
    server = response.header("server")
    product, _, version = (server or "").partition("/")
    return Identity(
        service="http",
        product=product or None,
        version=version.split(" ", 1)[0] or None,
        banner=f"HTTP {response.status}" + (f" Server: {server}" if server else ""),
    )


def _elasticsearch(response: httpwire.HttpResponse, body: bytes) -> Identity | None:
    if response.status == 401 and (
        b"security_exception" in body or 'realm="security"' in (response.header("www-authenticate") or "")
    ):
        return Identity(service="elasticsearch", product="Elasticsearch", access=AUTH)
    if response.status != 200 or b"cluster_name" not in body:
        return None
    try:
        document = json.loads(body)
        version = document["version"]["number"]
    except (ValueError, KeyError, TypeError):
        return None
    return Identity(service="elasticsearch", product="Elasticsearch", version=str(version), access=OPEN)


Probe = Callable[[Talk, Session], Awaitable[Identity | None]]
PROBES: dict[str, Probe] = {
    "http": _http,
    "redis": lambda talk, _: _redis(talk),
    "postgresql": _postgresql,
    "mongodb": lambda talk, _: _mongodb(talk),
    "mqtt": lambda talk, _: _mqtt(talk),
    "amqp": lambda talk, _: _amqp(talk),
    "memcached": lambda talk, _: _memcached(talk),
}


async def _greet(talk: Talk) -> Identity | None:
    """What the service says unasked; Telnet's option negotiation is declined and its login text read."""
    first = await talk.ask(None, until=lambda d: False)
    found = wire.read_greeting(first)
    if found is None or found.service != "telnet":
        return found
    text, commands = wire.strip_telnet(first)
    more = await talk.ask(wire.telnet_refusals(commands), until=lambda d: d.rstrip().endswith((b":", b"#", b"$", b">")))
    more_text, _ = wire.strip_telnet(more)
    return replace(found, banner=wire.read_telnet_text(text + more_text))


async def run_probe(session: Session, port: int, name: str, *, timeout_s: float) -> Found:
    """One probe on a new connection (``tls``: a TLS handshake, then the port's protocol or HTTP inside).

    The probe's time starts once it is connected: waiting for one of the target's socket slots is not counted.
    """
    try:
        if name == "tls":
            return Found(identity=await _tls(session, port, timeout_s))
        async with session.connect(port=port) as conn:
            deadline = asyncio.get_running_loop().time() + timeout_s
            async with asyncio.timeout_at(deadline + CLOSE_GRACE_S):
                talk = Talk(conn, deadline=deadline)
                found = await PROBES[name](talk, session)
                return Found(
                    identity=found or wire.read_greeting(bytes(talk.received)), first_words=bytes(talk.received)
                )
    except (ConnectFailed, ConnectionError, TimeoutError, ssl.SSLError, OSError):
        return Found(identity=None)


async def _tls(session: Session, port: int, timeout_s: float) -> Identity | None:
    hint = PORT_HINTS.get(port)
    inner = hint if hint in _INSIDE_TLS else "http"
    version: str | None = None
    found: Identity | None = None
    try:
        async with session.connect(port=port, tls=probing_context(permissive=True)) as conn:
            version = conn.ssl_object.version() if conn.ssl_object else None
            deadline = asyncio.get_running_loop().time() + timeout_s
            async with asyncio.timeout_at(deadline + CLOSE_GRACE_S):
                found = await PROBES[inner or "http"](Talk(conn, deadline=deadline), session)
    except ssl.SSLError as exc:
        if version is None and "ALERT" not in str(exc).upper():
            return None  # no TLS here
        why = str(exc.reason or exc).lower()
        note = f"handshake refused: {why}" if version is None else f"{version}, then {why}"
        return Identity(service="ssl", tls=True, note=note)
    except (ConnectionError, OSError):
        if version is None:
            return None
    if found is not None:
        return replace(found, tls=True)
    return Identity(service="ssl", tls=True, note=f"{version}, protocol inside not identified")


async def first_look(session: Session, conn: Connection, *, timeout_s: float) -> Found:
    """Step 1 on the port's first connection: the usual protocol's probe, or the greeting."""
    hint = PORT_HINTS.get(conn.port)
    talk = Talk(conn, deadline=asyncio.get_running_loop().time() + timeout_s)
    found: Identity | None = None
    try:
        if hint is None:
            found = await _greet(talk)
        elif hint != "tls":
            found = await PROBES[hint](talk, session) or wire.read_greeting(bytes(talk.received))
    except (ConnectFailed, ConnectionError, TimeoutError, ssl.SSLError, OSError):
        found = None
    return Found(identity=found, first_words=bytes(talk.received))


async def fallback(session: Session, port: int, *, timeout_s: float) -> Identity | None:
    """Step 2: the other probes at once, each on its own connection; the first in ``FALLBACK`` order that knows."""
    hint = PORT_HINTS.get(port)
    names = [name for name in FALLBACK if name != hint or hint == "tls"]
    results = await asyncio.gather(*(run_probe(session, port, name, timeout_s=timeout_s) for name in names))
    return next((r.identity for r in results if r.identity is not None), None)
