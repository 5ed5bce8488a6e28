"""Reading services from their bytes: greetings, probe answers, and the grade of what answered (no I/O)."""

from __future__ import annotations

import struct

import pytest

from scanq.scanners.net import mongowire
from scanq.scanners.net import servicewire as wire
from scanq.scanners.net.findings import Severity
from scanq.scanners.net.ports import grade
from scanq.scanners.net.probes import read_http
from scanq.scanners.net.servicewire import AUTH, OPEN, Identity


def mysql_packet(body: bytes) -> bytes:
    return len(body).to_bytes(3, "little") + b"\x00" + body


def test_mariadb_and_mysql_greetings_give_product_and_version():
    maria = wire.read_greeting(mysql_packet(b"\x0a5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x08\x00\x00\x00abc"))
    assert maria == Identity(
        service="mysql", product="MariaDB", version="10.11.19", note="server version 5.5.5-10.11.19-MariaDB-0+deb12u1"
    )
    mysql = wire.read_greeting(mysql_packet(b"\x0a8.0.36-0ubuntu0.22.04.1\x00\x08\x00\x00\x00abc"))
    assert mysql is not None and (mysql.product, mysql.version) == ("MySQL", "8.0.36")
    refused = wire.read_greeting(mysql_packet(b"\xff\x6a\x04Host '10.0.0.9' is not allowed to connect to this server"))
    assert refused is not None and refused.service == "mysql"


def test_telnet_negotiation_is_stripped_and_declined():
    data = b"\xff\xfd\x18\xff\xfb\x01\xff\xfa\x18\x01\xff\xf0Ubuntu 22.04\r\nlogin: "
    text, commands = wire.strip_telnet(data)
    assert text == b"Ubuntu 22.04\r\nlogin: "
    assert commands == [(wire.DO, 0x18), (wire.WILL, 0x01)]
    assert wire.telnet_refusals(commands) == b"\xff\xfc\x18\xff\xfe\x01"
    found = wire.read_greeting(data)
    assert found is not None and found.service == "telnet" and found.describe() == "Ubuntu 22.04 login:"


@pytest.mark.parametrize(
    ("data", "service", "describe"),
    [
        (b"SSH-2.0-OpenSSH_9.6p1 Debian\r\n", "ssh", "SSH-2.0-OpenSSH_9.6p1 Debian"),
        (b"220 (vsFTPd 3.0.3)\r\n", "ftp", "220 (vsFTPd 3.0.3)"),
        (b"220 mx.example ESMTP Postfix\r\n", "smtp", "220 mx.example ESMTP Postfix"),
        (b"+OK Dovecot ready.\r\n", "pop3", "+OK Dovecot ready."),
        (b"* OK [CAPABILITY IMAP4rev1] ready\r\n", "imap", "* OK [CAPABILITY IMAP4rev1] ready"),
        (b"RFB 003.008\n", "vnc", "RFB 003.008"),
        (b'INFO {"version":"2.10.4","auth_required":true}\r\n', "nats", "NATS 2.10.4, authentication required"),
    ],
)
def test_text_greetings(data, service, describe):
    found = wire.read_greeting(data)
    assert found is not None
    assert (found.service, found.describe()) == (service, describe)


def test_binary_noise_is_no_banner_and_no_service():
    noise = bytes(range(0, 256, 7))
    assert wire.read_greeting(noise) is None
    assert wire.printable_line(noise) is None
    assert wire.printable_line(b"hello there\r\nmore") == "hello there"


def test_redis_answers():
    assert wire.read_redis(b"+PONG\r\n") == Identity(service="redis", product="Redis", access=OPEN)
    assert wire.read_redis(b"-NOAUTH Authentication required.\r\n") == Identity(
        service="redis", product="Redis", access=AUTH
    )
    denied = wire.read_redis(b"-DENIED Redis is running in protected mode\r\n")
    assert denied is not None and denied.access == AUTH
    assert wire.read_redis(b"HTTP/1.1 400 Bad Request\r\n") is None
    info = wire.redis_info(
        Identity(service="redis", access=OPEN), b"+PONG\r\n$30\r\n# Server\r\nredis_version:7.0.15\r\n"
    )
    assert info.version == "7.0.15"


def test_postgres_answers():
    trust = wire.read_postgres(b"R" + struct.pack("!II", 8, 0), ssl_answer=b"N")
    assert trust == Identity(service="postgresql", product="PostgreSQL", access=OPEN, note="no TLS")
    scram = wire.read_postgres(b"R" + struct.pack("!II", 8, 10))
    assert scram is not None and scram.access == AUTH
    fields = b"SFATAL\x00VFATAL\x00C28000\x00Mno pg_hba.conf entry for host\x00\x00"
    error = wire.read_postgres(b"E" + struct.pack("!I", 4 + len(fields)) + fields, ssl_answer=b"S")
    assert error is not None and (error.access, error.note) == (AUTH, "TLS offered, error 28000")
    assert wire.read_postgres(b"garbage!!") is None


def test_mqtt_connack_codes_and_broker_version():
    assert wire.read_mqtt(b"\x20\x02\x00\x00") == Identity(service="mqtt", access=OPEN)
    assert wire.read_mqtt(b"\x20\x02\x00\x05") == Identity(service="mqtt", access=AUTH)
    assert wire.read_mqtt(b"\x20\x03\x00\x00") is None
    publish = b"\x90\x03\x00\x01\x00\x31\x2b\x00\x13$SYS/broker/versionmosquitto version 2.0.18"
    found = wire.mqtt_broker_version(Identity(service="mqtt", access=OPEN), publish)
    assert (found.product, found.version) == ("Mosquitto", "2.0.18")
    assert wire.mqtt_connect()[:2] == b"\x10\x17"


def test_amqp_connection_start():
    props = b"\x07productS" + struct.pack("!I", 8) + b"RabbitMQ" + b"\x07versionS" + struct.pack("!I", 6) + b"3.12.1"
    payload = b"\x00\x0a\x00\x0a\x00\x09" + struct.pack("!I", len(props)) + props + b"\x00\x00\x00\x05PLAIN"
    frame = b"\x01\x00\x00" + struct.pack("!I", len(payload)) + payload + b"\xce"
    assert wire.read_amqp(frame) == Identity(service="amqp", product="RabbitMQ", version="3.12.1", access=AUTH)
    assert wire.read_amqp(b"AMQP\x00\x00\x09\x01") == Identity(service="amqp", note="other protocol version")


def test_memcached_and_elasticsearch_and_http():
    assert wire.read_memcached(b"VERSION 1.6.21\r\n") == Identity(
        service="memcached", product="Memcached", version="1.6.21", access=OPEN
    )
    body = b'{"cluster_name":"c","version":{"number":"8.11.3"}}'
    es = read_http(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n" + body)
    assert es == Identity(service="elasticsearch", product="Elasticsearch", version="8.11.3", access=OPEN)
    locked = read_http(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="security"\r\n\r\n')
    assert locked is not None and (locked.service, locked.access) == ("elasticsearch", AUTH)
    web = read_http(b"HTTP/1.1 302 Found\r\nServer: Apache/2.4.58 (Debian)\r\n\r\n")
    assert web is not None and (web.product, web.version, web.describe()) == (
        "Apache",
        "2.4.58",
        "HTTP 302 Server: Apache/2.4.58 (Debian)",
    )


def test_mongodb_replies():
    info = mongowire.bson({"version": "7.0.5", "ok": 1.0})
    listing = mongowire.bson({"ok": 0.0, "errmsg": "requires authentication", "code": 13})

    def reply(to: int, document: bytes) -> bytes:
        body = struct.pack("<I", 0) + b"\x00" + document
        return struct.pack("<iiii", 16 + len(body), 99, to, mongowire.OP_MSG) + body

    data = reply(1, info) + reply(2, listing)
    assert mongowire.is_complete(data)
    assert mongowire.read_mongodb(data) == Identity(service="mongodb", product="MongoDB", version="7.0.5", access=AUTH)
    assert mongowire.read_document(mongowire.bson({"a": True, "b": 2, "c": "x"})) == {"a": True, "b": 2, "c": "x"}


@pytest.mark.parametrize(
    ("identity", "port", "severity"),
    [
        (Identity(service="redis", access=OPEN), 40000, Severity.CRITICAL),
        (Identity(service="redis", access=AUTH), 6379, Severity.HIGH),
        (Identity(service="ssl", tls=True), 6379, Severity.LOW),
        (Identity(service="ssh"), 6379, Severity.LOW),
        (Identity(service="amqp", access=AUTH), 5672, Severity.MEDIUM),
        (Identity(service="mqtt", access=OPEN), 1883, Severity.HIGH),
        (Identity(service="telnet"), 2323, Severity.CRITICAL),
        (Identity(service="http", tls=True), 8443, Severity.MEDIUM),
        (Identity(service="http"), 8080, Severity.LOW),
        (None, 3389, Severity.CRITICAL),
        (None, 40000, Severity.LOW),
    ],
)
def test_grade_is_what_answered(identity, port, severity):
    assert grade(identity, port) == severity
