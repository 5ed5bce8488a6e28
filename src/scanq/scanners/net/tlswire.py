"""A TLS handshake that keeps what the server sent, and the certificate chain read from it.

Python's ``ssl`` (before 3.13) gives the peer's leaf certificate only, and a
verifying handshake judges the chain under the connection's security level
and protocol range. To judge trust apart from the handshake, the client
handshake runs over memory BIOs and the bytes the server sent are kept:

- up to TLS 1.2 the Certificate message travels in clear and is read as is;
- in TLS 1.3 it is encrypted with the server's handshake traffic key, so the
  handshake's secret is taken from OpenSSL's key log (a private temporary
  file, deleted at once) and the handshake records are decrypted here.

The secrets are those of a probe connection that carries no data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import struct
import tempfile
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from scanq.scanners.net.connect import Session

_READ_BYTES = 65536
_CHANGE_CIPHER_SPEC_TYPE = 20
_HANDSHAKE_TYPE = 22
_ALERT_TYPE = 21
_APPLICATION_DATA_TYPE = 23
_CERTIFICATE_MESSAGE = 11
_COMPRESSED_CERTIFICATE_MESSAGE = 25
_SERVER_SECRET_LABEL = "SERVER_HANDSHAKE_TRAFFIC_SECRET"


class ChainUnreadable(Exception):
    """The certificate chain could not be read from the captured handshake."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Handshake:
    """What one handshake saw: protocol, cipher, the leaf, and the chain as sent (None with the reason)."""

    version: str | None
    cipher: str | None
    cert_der: bytes | None
    chain: tuple[bytes, ...] | None = None
    chain_error: str | None = None


async def handshake(session: Session, port: int, ctx: ssl.SSLContext, *, read_chain: bool = False) -> Handshake:
    """Run a client handshake with ``ctx`` over a fresh connection; with ``read_chain``, read the sent chain.

    Raises:
        ConnectFailed: the TCP connection failed.
        ssl.SSLError, ConnectionError, TimeoutError: the handshake failed.
    """
    # Only a TLS 1.3 handshake hides the chain; older ones need no key log.
    may_be_tls13 = ctx.maximum_version in (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3)
    keylog = _KeyLog.open(ctx) if read_chain and may_be_tls13 else None
    try:
        async with session.connect(port=port) as conn:
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            obj = ctx.wrap_bio(incoming, outgoing, server_hostname=session.server_hostname)
            received = bytearray()
            async with asyncio.timeout(session.connect_timeout_s):
                while True:
                    try:
                        obj.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        pass
                    await _flush(outgoing, conn.writer)
                    chunk = await conn.reader.read(_READ_BYTES)
                    if not chunk:
                        raise ConnectionResetError("the server closed the connection during the handshake")
                    received += chunk
                    incoming.write(chunk)
                await _flush(outgoing, conn.writer)
        cipher = obj.cipher()
        seen = Handshake(version=obj.version(), cipher=cipher[0] if cipher else None, cert_der=obj.getpeercert(True))
        if not read_chain:
            return seen
        try:
            logged = keylog.read() if keylog is not None else None
            chain = read_sent_chain(bytes(received), version=seen.version, cipher=seen.cipher, keylog=logged)
        except ChainUnreadable as exc:
            why = keylog.error if keylog is not None and keylog.error else str(exc)
            return Handshake(version=seen.version, cipher=seen.cipher, cert_der=seen.cert_der, chain_error=why)
        return Handshake(version=seen.version, cipher=seen.cipher, cert_der=seen.cert_der, chain=chain)
    finally:
        if keylog is not None:
            keylog.remove()


async def _flush(outgoing: ssl.MemoryBIO, writer: asyncio.StreamWriter) -> None:
    data = outgoing.read()
    if data:
        writer.write(data)
        await writer.drain()


class _KeyLog:
    """OpenSSL's key log for one context, in a private temporary file."""

    def __init__(self, path: str | None, error: str | None) -> None:
        self.path = path
        self.error = error

    @classmethod
    def open(cls, ctx: ssl.SSLContext) -> _KeyLog:
        try:
            fd, path = tempfile.mkstemp(prefix="scanq-keylog-")
            os.close(fd)
            ctx.keylog_filename = path
        except (OSError, NotImplementedError) as exc:
            return cls(None, f"no key log for TLS 1.3: {exc}")
        return cls(path, None)

    def read(self) -> str | None:
        if self.path is None:
            return None
        try:
            with open(self.path, encoding="ascii", errors="replace") as f:
                return f.read()
        except OSError:
            return None

    def remove(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def read_sent_chain(
    received: bytes, *, version: str | None, cipher: str | None, keylog: str | None
) -> tuple[bytes, ...]:
    """The DER certificates of the server's Certificate message, in the order sent (leaf first).

    Args:
        received: every byte the server sent until the client's handshake finished.
        version: the negotiated protocol (``TLSv1.3`` means the message is encrypted).
        cipher: the negotiated cipher suite (for TLS 1.3, the AEAD and hash).
        keylog: the NSS key log lines written during the handshake (TLS 1.3 only).

    Raises:
        ChainUnreadable: with the reason.
    """
    records = list(_records(received))
    if version != "TLSv1.3":
        clear = bytearray()
        for kind, _, body in records:
            if kind == _CHANGE_CIPHER_SPEC_TYPE:
                break  # what follows is encrypted
            if kind == _HANDSHAKE_TYPE:
                clear += body
        return _certificates_tls12(_message(bytes(clear), _CERTIFICATE_MESSAGE))
    if not keylog or _SERVER_SECRET_LABEL not in keylog:
        raise ChainUnreadable("no TLS 1.3 handshake secret was logged")
    secret = _server_handshake_secret(keylog)
    decrypter = _Tls13Decrypter(secret, cipher or "")
    handshake_bytes = bytearray()
    for kind, header, body in records:
        if kind != _APPLICATION_DATA_TYPE:
            continue
        try:
            content_type, plain = decrypter.open(header, body)
        except InvalidTag:
            break  # past the handshake: application keys from here on
        if content_type == _HANDSHAKE_TYPE:
            handshake_bytes += plain
            if _has_message(bytes(handshake_bytes), _CERTIFICATE_MESSAGE):
                break
    if _has_message(bytes(handshake_bytes), _COMPRESSED_CERTIFICATE_MESSAGE):
        raise ChainUnreadable("the server sent a compressed certificate chain")
    return _certificates_tls13(_message(bytes(handshake_bytes), _CERTIFICATE_MESSAGE))


def _records(data: bytes) -> list[tuple[int, bytes, bytes]]:
    out = []
    offset = 0
    while offset + 5 <= len(data):
        header = data[offset : offset + 5]
        length = struct.unpack("!H", header[3:5])[0]
        body = data[offset + 5 : offset + 5 + length]
        if len(body) < length:
            break
        out.append((header[0], header, body))
        if header[0] == _ALERT_TYPE:
            break
        offset += 5 + length
    return out


def _messages(stream: bytes) -> list[tuple[int, bytes]]:
    out = []
    offset = 0
    while offset + 4 <= len(stream):
        kind = stream[offset]
        length = int.from_bytes(stream[offset + 1 : offset + 4], "big")
        body = stream[offset + 4 : offset + 4 + length]
        if len(body) < length:
            break
        out.append((kind, body))
        offset += 4 + length
    return out


def _has_message(stream: bytes, kind: int) -> bool:
    return any(k == kind for k, _ in _messages(stream))


def _message(stream: bytes, kind: int) -> bytes:
    for k, body in _messages(stream):
        if k == kind:
            return body
    raise ChainUnreadable("no Certificate message in the handshake")


def _certificates_tls12(body: bytes) -> tuple[bytes, ...]:
    total = int.from_bytes(body[:3], "big")
    return _certificate_list(body[3 : 3 + total], with_extensions=False)


def _certificates_tls13(body: bytes) -> tuple[bytes, ...]:
    if not body:
        raise ChainUnreadable("empty Certificate message")
    context = body[0]
    rest = body[1 + context :]
    total = int.from_bytes(rest[:3], "big")
    return _certificate_list(rest[3 : 3 + total], with_extensions=True)


def _certificate_list(data: bytes, *, with_extensions: bool) -> tuple[bytes, ...]:
    certs = []
    offset = 0
    while offset + 3 <= len(data):
        length = int.from_bytes(data[offset : offset + 3], "big")
        cert = data[offset + 3 : offset + 3 + length]
        if len(cert) < length:
            raise ChainUnreadable("truncated certificate in the Certificate message")
        certs.append(cert)
        offset += 3 + length
        if with_extensions:
            offset += 2 + int.from_bytes(data[offset : offset + 2], "big")
    if not certs:
        raise ChainUnreadable("the server sent no certificate")
    return tuple(certs)


def _server_handshake_secret(keylog: str) -> bytes:
    for line in keylog.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == _SERVER_SECRET_LABEL:
            try:
                return bytes.fromhex(parts[2])
            except ValueError:
                break
    raise ChainUnreadable("unreadable TLS 1.3 handshake secret in the key log")


_TLS13_SUITES: dict[str, tuple[str, int, hashes.HashAlgorithm]] = {
    "TLS_AES_128_GCM_SHA256": ("gcm", 16, hashes.SHA256()),
    "TLS_AES_256_GCM_SHA384": ("gcm", 32, hashes.SHA384()),
    "TLS_CHACHA20_POLY1305_SHA256": ("chacha", 32, hashes.SHA256()),
    "TLS_AES_128_CCM_SHA256": ("ccm", 16, hashes.SHA256()),
    "TLS_AES_128_CCM_8_SHA256": ("ccm8", 16, hashes.SHA256()),
}


def _expand_label(secret: bytes, label: str, length: int, algorithm: hashes.HashAlgorithm) -> bytes:
    """HKDF-Expand-Label of RFC 8446 §7.1 with an empty context."""
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(algorithm=algorithm, length=length, info=info).derive(secret)


class _Tls13Decrypter:
    """Opens the server's handshake records (RFC 8446 §5.2-5.3)."""

    def __init__(self, secret: bytes, cipher: str) -> None:
        if cipher not in _TLS13_SUITES:
            raise ChainUnreadable(f"TLS 1.3 cipher suite {cipher or '?'} not supported for reading the chain")
        kind, key_len, algorithm = _TLS13_SUITES[cipher]
        key = _expand_label(secret, "key", key_len, algorithm)
        self.iv = _expand_label(secret, "iv", 12, algorithm)
        self.aead: AESGCM | ChaCha20Poly1305 | AESCCM
        if kind == "gcm":
            self.aead = AESGCM(key)
        elif kind == "chacha":
            self.aead = ChaCha20Poly1305(key)
        else:
            self.aead = AESCCM(key, tag_length=8 if kind == "ccm8" else 16)
        self.sequence = 0

    def open(self, header: bytes, body: bytes) -> tuple[int, bytes]:
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.sequence.to_bytes(12, "big"), strict=True))
        plain = self.aead.decrypt(nonce, body, header)
        self.sequence += 1
        inner = plain.rstrip(b"\x00")
        if not inner:
            raise ChainUnreadable("an empty TLS 1.3 record")
        return inner[-1], inner[:-1]
