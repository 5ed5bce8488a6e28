"""What a port's service is, read from the bytes it sent: greetings, probe payloads and their answers.

No I/O here (``probes.py`` talks to the port). Each reader takes what the
service sent and returns an ``Identity`` or None when the bytes are not that
protocol. Service names follow nmap's (``nmap-services``) where one exists,
so results can be compared with ``nmap -sV``.

``Identity.access`` says what the service let an anonymous client do:
``open`` (it served a request without credentials), ``auth`` (it asked for
credentials), or None (the probe could not tell).
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, replace

from scanq.scanners.net.findings import shorten

BANNER_MAX_CHARS = 120
OPEN, AUTH = "open", "auth"


@dataclass(frozen=True, kw_only=True, slots=True)
class Identity:
    """The service found on a port."""

    service: str
    product: str | None = None
    version: str | None = None
    access: str | None = None
    tls: bool = False
    note: str | None = None
    banner: str | None = None  # the service's own words, when it greets in text

    def describe(self) -> str:
        """One short line for a report: the text banner when there is one, else product, version and access."""
        if self.banner and not self.tls:
            return self.banner
        name = " ".join(p for p in (self.product or self.service, self.version) if p)
        if self.service == "ssl":
            name = "TLS only"
        parts = [f"{name} over TLS" if self.tls and self.service != "ssl" else name]
        if self.access == OPEN:
            parts.append("no authentication")
        elif self.access == AUTH:
            parts.append("authentication required")
        if self.note:
            parts.append(self.note)
        return shorten(", ".join(parts), BANNER_MAX_CHARS)


def printable_line(data: bytes) -> str | None:
    """The first line of ``data`` when it is text, shortened; None for binary or empty data."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not line:
        return None
    printable = sum(1 for b in line if 32 <= b < 127 or b == 9)
    if printable < len(line) * 0.9:
        return None
    return shorten(line.decode("utf-8", "replace"), BANNER_MAX_CHARS) or None


# --- greetings: what a service says first -----------------------------------------------------

_SSH = re.compile(rb"^SSH-(\d+\.\d+)-([^\s\r\n]+)")
_VNC = re.compile(rb"^RFB (\d{3})\.(\d{3})\n")


def read_greeting(data: bytes) -> Identity | None:
    """The service behind a greeting (the first bytes it sent before any request)."""
    if not data:
        return None
    for reader in (_ssh, _mysql, _telnet, _vnc, _nats, _text_greeting):
        found = reader(data)
        if found is not None:
            return found
    return None


def _ssh(data: bytes) -> Identity | None:
    match = _SSH.match(data)
    if match is None:
        return None
    software = match.group(2).decode("ascii", "replace")
    product, _, version = software.partition("_")
    return Identity(service="ssh", product=product, version=version or None, banner=printable_line(data))


def _mysql(data: bytes) -> Identity | None:
    """The MySQL/MariaDB initial handshake packet (protocol 10), or the error packet sent instead."""
    if len(data) < 5 or data[3] != 0:
        return None
    length = int.from_bytes(data[:3], "little")
    if length < 2 or length > 1024:
        return None
    body = data[4 : 4 + length]
    if body[0] == 0x0A:
        end = body.find(b"\x00", 1)
        if end < 2:
            return None
        raw = body[1:end].decode("ascii", "replace")
        if not re.match(r"^\d+\.\d+", raw):
            return None
        product = "MariaDB" if "mariadb" in raw.lower() else "MySQL"
        # MariaDB prefixes "5.5.5-" so that old clients accept it.
        version = raw.removeprefix("5.5.5-").split("-", 1)[0] if product == "MariaDB" else raw.split("-", 1)[0]
        return Identity(service="mysql", product=product, version=version, note=f"server version {raw}")
    if body[0] == 0xFF and len(body) > 3:
        message = body[3:].decode("utf-8", "replace").lstrip("#")
        if "mysql" in message.lower() or "mariadb" in message.lower() or "is not allowed to connect" in message:
            return Identity(service="mysql", product="MySQL", note=shorten(message, 80))
    return None


IAC, SB, SE = 255, 250, 240
WILL, WONT, DO, DONT = 251, 252, 253, 254


def strip_telnet(data: bytes) -> tuple[bytes, list[tuple[int, int]]]:
    """The text of a Telnet stream without its option negotiation, and the (command, option) pairs seen."""
    text = bytearray()
    commands: list[tuple[int, int]] = []
    i = 0
    while i < len(data):
        byte = data[i]
        if byte != IAC:
            text.append(byte)
            i += 1
            continue
        command = data[i + 1] if i + 1 < len(data) else None
        if command in (WILL, WONT, DO, DONT) and i + 2 < len(data):
            commands.append((command, data[i + 2]))
            i += 3
        elif command == SB:
            end = data.find(bytes((IAC, SE)), i + 2)
            i = len(data) if end < 0 else end + 2
        elif command == IAC:
            text.append(IAC)
            i += 2
        else:
            i += 2
    return bytes(text), commands


def telnet_refusals(commands: list[tuple[int, int]]) -> bytes:
    """The answer that declines every option asked (WONT to DO, DONT to WILL), so the login text follows."""
    out = bytearray()
    for command, option in commands:
        if command == DO:
            out += bytes((IAC, WONT, option))
        elif command == WILL:
            out += bytes((IAC, DONT, option))
    return bytes(out)


def _telnet(data: bytes) -> Identity | None:
    if len(data) < 3 or data[0] != IAC or data[1] not in (WILL, WONT, DO, DONT, SB):
        return None
    text, _ = strip_telnet(data)
    return Identity(service="telnet", banner=read_telnet_text(text))


def read_telnet_text(text: bytes) -> str | None:
    """The login text of a Telnet service: its non-empty lines, joined."""
    lines = [printable_line(line) for line in text.replace(b"\r", b"\n").split(b"\n")]
    joined = " ".join(line for line in lines if line)
    return shorten(joined, BANNER_MAX_CHARS) or None


def _vnc(data: bytes) -> Identity | None:
    match = _VNC.match(data)
    if match is None:
        return None
    version = f"{int(match.group(1))}.{int(match.group(2))}"
    return Identity(service="vnc", product="VNC", note=f"protocol {version}", banner=printable_line(data))


def _nats(data: bytes) -> Identity | None:
    if not data.startswith(b"INFO {"):
        return None
    line = data.split(b"\r\n", 1)[0][5:]
    try:
        info = json.loads(line)
    except ValueError:
        info = {}
    version = info.get("version") if isinstance(info, dict) else None
    needs_auth = isinstance(info, dict) and bool(info.get("auth_required"))
    return Identity(
        service="nats", product="NATS", version=str(version) if version else None, access=AUTH if needs_auth else OPEN
    )


def _text_greeting(data: bytes) -> Identity | None:
    line = printable_line(data)
    if line is None:
        return None
    if line.startswith("220"):
        is_smtp = re.search(r"\bE?SMTP\b", line, re.IGNORECASE) is not None
        return Identity(service="smtp" if is_smtp else "ftp", banner=line)
    if line.startswith("+OK"):
        return Identity(service="pop3", banner=line)
    if line.startswith("* OK"):
        return Identity(service="imap", banner=line)
    return None


# --- probes: a request, and what its answer means ---------------------------------------------

REDIS_PING = b"*1\r\n$4\r\nPING\r\n"
REDIS_INFO = b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"


def read_redis(answer: bytes) -> Identity | None:
    """The answer to ``PING``: ``+PONG`` (open), ``-NOAUTH``/``-WRONGPASS`` (auth) or another Redis error."""
    if answer.startswith(b"+PONG"):
        return Identity(service="redis", product="Redis", access=OPEN)
    if answer.startswith((b"-NOAUTH", b"-WRONGPASS", b"-NOPERM")):
        return Identity(service="redis", product="Redis", access=AUTH)
    if answer.startswith(b"-DENIED"):
        return Identity(service="redis", product="Redis", access=AUTH, note="protected mode")
    return None


def redis_info(identity: Identity, answer: bytes) -> Identity:
    """``identity`` with the version from ``INFO server`` when the answer carries it."""
    match = re.search(rb"redis_version:([\w.\-]+)", answer)
    return replace(identity, version=match.group(1).decode()) if match else identity


def is_redis_info_complete(answer: bytes) -> bool:
    return b"+PONG\r\n" in answer and (b"redis_version:" in answer or answer.rstrip().endswith(b"\r\n-"))


POSTGRES_SSL_REQUEST = struct.pack("!II", 8, 80877103)


def postgres_startup(user: str = "scanq", database: str = "scanq") -> bytes:
    """A protocol 3.0 StartupMessage for ``user`` (a role that should not exist)."""
    params = f"user\0{user}\0database\0{database}\0application_name\0scanq-probe\0\0".encode()
    return struct.pack("!II", 8 + len(params), 196608) + params


def read_postgres(answer: bytes, *, ssl_answer: bytes | None = None) -> Identity | None:
    """The answer to a StartupMessage: an authentication request (``R``) or an error (``E``)."""
    if len(answer) < 9:
        return None
    kind, length = answer[0:1], struct.unpack("!I", answer[1:5])[0]
    if kind == b"R" and length == 8:
        code = struct.unpack("!I", answer[5:9])[0]
        access = OPEN if code == 0 else AUTH
        note = _pg_ssl_note(ssl_answer)
        return Identity(service="postgresql", product="PostgreSQL", access=access, note=note)
    if kind == b"E" and 8 <= length <= 4096:
        fields = _pg_error_fields(answer[5 : 1 + length])
        if "C" not in fields or "M" not in fields:
            return None
        detail = fields["M"] if fields["C"] not in ("28000", "3D000", "28P01") else f"error {fields['C']}"
        ssl_note = _pg_ssl_note(ssl_answer)
        return Identity(
            service="postgresql",
            product="PostgreSQL",
            access=AUTH if fields["C"].startswith("28") else None,
            note=", ".join(n for n in (ssl_note, shorten(detail, 60)) if n),
        )
    return None


def _pg_ssl_note(ssl_answer: bytes | None) -> str | None:
    if ssl_answer == b"S":
        return "TLS offered"
    if ssl_answer == b"N":
        return "no TLS"
    return None


def _pg_error_fields(body: bytes) -> dict[str, str]:
    fields = {}
    for part in body.split(b"\x00"):
        if len(part) > 1:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def mqtt_connect(client_id: str = "scanq-probe") -> bytes:
    """An MQTT 3.1.1 CONNECT: clean session, 30 s keep-alive, no credentials."""
    cid = client_id.encode()
    variable = b"\x00\x04MQTT\x04\x02\x00\x1e" + struct.pack("!H", len(cid)) + cid
    return b"\x10" + bytes((len(variable),)) + variable


MQTT_VERSION_TOPIC = b"$SYS/broker/version"
MQTT_SUBSCRIBE_VERSION = b"\x82" + bytes((2 + 2 + len(MQTT_VERSION_TOPIC) + 1,)) + b"\x00\x01"
MQTT_SUBSCRIBE_VERSION += struct.pack("!H", len(MQTT_VERSION_TOPIC)) + MQTT_VERSION_TOPIC + b"\x00"
MQTT_DISCONNECT = b"\xe0\x00"
_MQTT_CODES = {0: OPEN, 4: AUTH, 5: AUTH}


def read_mqtt(answer: bytes) -> Identity | None:
    """The CONNACK to an anonymous CONNECT: accepted (open), or refused for credentials (auth)."""
    if len(answer) < 4 or answer[0] != 0x20 or answer[1] != 0x02:
        return None
    code = answer[3]
    note = None if code in _MQTT_CODES else f"CONNACK code {code}"
    return Identity(service="mqtt", access=_MQTT_CODES.get(code), note=note)


def mqtt_broker_version(identity: Identity, answer: bytes) -> Identity:
    """``identity`` with the broker's product and version from a ``$SYS/broker/version`` PUBLISH, when sent."""
    index = answer.find(MQTT_VERSION_TOPIC)
    if index < 0:
        return identity
    payload = answer[index + len(MQTT_VERSION_TOPIC) :].split(b"\x00", 1)[0]
    match = re.match(rb"([A-Za-z][\w.-]*) version ([\w.\-]+)", payload)
    if match is None:
        return identity
    return replace(identity, product=match.group(1).decode().capitalize(), version=match.group(2).decode())


def is_mqtt_version_complete(answer: bytes) -> bool:
    return MQTT_VERSION_TOPIC in answer and re.search(rb"version [\w.]+", answer) is not None


AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def read_amqp(answer: bytes) -> Identity | None:
    """The Connection.Start method frame an AMQP 0-9-1 broker answers the protocol header with."""
    if answer.startswith(b"AMQP"):
        return Identity(service="amqp", note="other protocol version")
    if len(answer) < 11 or answer[0] != 1 or answer[7:11] != b"\x00\x0a\x00\x0a":
        return None
    product = _amqp_field(answer, b"product")
    version = _amqp_field(answer, b"version")
    anonymous = b"ANONYMOUS" in answer
    return Identity(service="amqp", product=product, version=version, access=OPEN if anonymous else AUTH)


def _amqp_field(frame: bytes, key: bytes) -> str | None:
    # server-properties is a field table of shortstr keys; long strings are 'S' + 4-byte length.
    index = frame.find(bytes((len(key),)) + key + b"S")
    if index < 0:
        return None
    start = index + 1 + len(key) + 1
    length = int.from_bytes(frame[start : start + 4], "big")
    return frame[start + 4 : start + 4 + min(length, 64)].decode("utf-8", "replace") or None


MEMCACHED_VERSION = b"version\r\n"


def read_memcached(answer: bytes) -> Identity | None:
    match = re.match(rb"VERSION (\S+)\r\n", answer)
    if match is None:
        return None
    return Identity(service="memcached", product="Memcached", version=match.group(1).decode(), access=OPEN)
