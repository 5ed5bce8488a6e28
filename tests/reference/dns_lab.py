"""A local authoritative DNS server for the dns scanner's tests, with DNSSEC made at test time.

Records are written in presentation format (``("good.test", "MX", "10 mx.good.test.")``). The
server answers over UDP and TCP on one port of 127.0.0.1 (checkdmarc asks DNSSEC questions over
TCP), from threads of its own, so a synchronous reference tool and the asyncio scanners can both
use it. With the DO bit it adds the RRSIGs it holds. A name with no record at all, and nothing
below it, is NXDOMAIN; a name with records, but none of the type asked, an empty answer.

``Lab.sign(apex, ...)`` signs a zone (ECDSA P-256, one key) and publishes its DS; its keyword
arguments break it in the ways the reference cases need.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import socketserver
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import dns.dnssec
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec
from dns.dnssectypes import Algorithm

LOOPBACK = "127.0.0.1"
TTL_S = 60
Record = tuple[str, str, str]  # (name, type, rdata in presentation format)


def spf(text: str) -> str:
    """A TXT rdata in presentation format, split in 255-byte strings as DNS requires."""
    raw = text.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return " ".join('"' + c.decode().replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


txt = spf


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text.rstrip(".") + ".")


@dataclass
class Lab:
    """The records a lab server answers from; add, sign, then ``serve``."""

    rrsets: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = field(default_factory=dict)
    signatures: dict[tuple[dns.name.Name, int], dns.rrset.RRset] = field(default_factory=dict)

    def add(self, *records: Record) -> Lab:
        for owner, rdtype_text, text in records:
            name, rdtype = _name(owner), dns.rdatatype.from_text(rdtype_text)
            rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False)
            rrset = self.rrsets.setdefault((name, rdtype), dns.rrset.RRset(name, dns.rdataclass.IN, rdtype))
            rrset.add(rdata, TTL_S)
        return self

    def sign(
        self,
        apex: str,
        *,
        publish_ds: bool = True,
        ds_matches: bool = True,
        publish_dnskey: bool = True,
        sign_dnskey: bool = True,
        sign_records: bool = True,
        expired: bool = False,
    ) -> Lab:
        """Sign every record set at or below ``apex`` (but its DS, which the parent signs), publish the DS.

        Args:
            publish_ds: the parent publishes a DS (without it the zone is merely unsigned).
            ds_matches: the DS digest is the key's (False: another key's digest).
            publish_dnskey: the zone answers its DNSKEY set.
            sign_dnskey: the DNSKEY set carries its RRSIG.
            sign_records: the other record sets carry theirs.
            expired: every signature expired yesterday.
        """
        zone = _name(apex)
        key = ec.generate_private_key(ec.SECP256R1())
        dnskey = dns.dnssec.make_dnskey(key.public_key(), Algorithm.ECDSAP256SHA256, flags=257)
        keys = dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        keys.add(dnskey, TTL_S)
        if publish_dnskey:
            self.rrsets[(zone, dns.rdatatype.DNSKEY)] = keys
        now = dt.datetime.now(dt.UTC)
        inception, expiration = (
            (now - dt.timedelta(days=10), now - dt.timedelta(days=1))
            if expired
            else (
                now - dt.timedelta(hours=1),
                now + dt.timedelta(days=7),
            )
        )
        for (name, rdtype), rrset in list(self.rrsets.items()):
            if not name.is_subdomain(zone) or rdtype == dns.rdatatype.DS:
                continue
            if (rdtype == dns.rdatatype.DNSKEY and not sign_dnskey) or (
                rdtype != dns.rdatatype.DNSKEY and not sign_records
            ):
                continue
            rrsig = dns.dnssec.sign(rrset, key, zone, dnskey, inception=inception, expiration=expiration)
            sigs = dns.rrset.RRset(name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.RdataType(rdtype))
            sigs.add(rrsig, TTL_S)
            self.signatures[(name, rdtype)] = sigs
        if publish_ds:
            digest_of = dnskey
            if not ds_matches:
                other = ec.generate_private_key(ec.SECP256R1()).public_key()
                digest_of = dns.dnssec.make_dnskey(other, Algorithm.ECDSAP256SHA256, flags=257)
            ds = dns.rrset.RRset(zone, dns.rdataclass.IN, dns.rdatatype.DS)
            ds.add(dns.dnssec.make_ds(zone, digest_of, "SHA256"), TTL_S)
            self.rrsets[(zone, dns.rdatatype.DS)] = ds
        return self

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The reply to one query."""
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        key = (question.name, question.rdtype)
        found = self.rrsets.get(key)
        if found is not None:
            response.answer.append(found)
            signature = self.signatures.get(key)
            if signature is not None and query.ednsflags & dns.flags.DO:
                response.answer.append(signature)
        elif not any(name.is_subdomain(question.name) for name, _ in self.rrsets):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


class LabServer:
    """A running lab: its ``address`` (``ip:port``), ``host``/``port``, and the questions it was asked."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []

    def handle(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        if query.question:
            question = query.question[0]
            with self._lock:
                self.queries.append(
                    (question.name.to_text(omit_final_dot=True).lower(), dns.rdatatype.to_text(question.rdtype))
                )
        return self.lab.answer(query).to_wire()

    def start(self) -> None:
        outer = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(outer.handle(data), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError, ValueError):
                    while (size := self.request.recv(2)) and len(size) == 2:
                        wire = _read_exactly(self.request, int.from_bytes(size, "big"))
                        reply = outer.handle(wire)
                        self.request.sendall(len(reply).to_bytes(2, "big") + reply)

        for _ in range(20):  # the TCP port must be the UDP one: retry if it is taken
            udp = socketserver.ThreadingUDPServer((LOOPBACK, 0), Udp)
            port = udp.server_address[1]
            tcp = socketserver.ThreadingTCPServer((LOOPBACK, port), Tcp, bind_and_activate=False)
            try:
                tcp.allow_reuse_address = True
                tcp.server_bind()
                tcp.server_activate()
            except OSError:
                # Both sockets go: an unclosed one surfaces later as a ResourceWarning in another test.
                tcp.server_close()
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("no port free for both UDP and TCP")
        for server in (udp, tcp):
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        self.host, self.port = LOOPBACK, port
        self.address = f"{LOOPBACK}:{port}"

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ValueError("connection closed mid-message")
        data += chunk
    return data


@contextlib.contextmanager
def serve(records: Iterable[Record] = (), *, lab: Lab | None = None) -> Iterator[LabServer]:
    """Serve ``records`` (or a prepared ``lab``) on 127.0.0.1 for the duration of the block."""
    lab = (lab or Lab()).add(*records)
    server = LabServer(lab)
    server.start()
    try:
        yield server
    finally:
        server.stop()
