"""The questions the ``dns`` scanner asks its resolver, with every failure mapped once.

An answer is a ``Reply``: its records, and whether the name does not exist at all (NXDOMAIN),
which SPF counts as a void lookup just like an empty answer. A resolver that fails (timeout,
SERVFAIL, refused) raises ``TransientScanError``: nothing could be learnt, so the scan is retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver

from scanq.exceptions import TransientScanError


@dataclass(frozen=True, kw_only=True, slots=True)
class Reply:
    """The records of one answer; ``nxdomain`` when the name does not exist."""

    records: tuple[Any, ...] = ()
    nxdomain: bool = False
    response: Any = None  # the whole dns.message.Message, for its RRSIGs

    @property
    def is_void(self) -> bool:
        """No record: NXDOMAIN or an empty answer (RFC 7208 section 4.6.4's "void lookup")."""
        return not self.records


async def ask(resolver: dns.asyncresolver.Resolver, name: str, rdtype: str) -> Reply:
    """The ``rdtype`` records at ``name`` (absolute; no search list); raise ``TransientScanError``."""
    try:
        answer = await resolver.resolve(name.rstrip(".") + ".", rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return Reply(nxdomain=True)
    except dns.exception.DNSException as exc:
        raise TransientScanError(f"DNS {rdtype} query for {name} failed: {exc}") from None
    return Reply(records=tuple(answer.rrset or ()), response=answer.response)


async def txt(resolver: dns.asyncresolver.Resolver, name: str) -> Reply:
    """The TXT records at ``name``, each one's strings joined and decoded."""
    reply = await ask(resolver, name, "TXT")
    texts = tuple(b"".join(rr.strings).decode("utf-8", "replace") for rr in reply.records)
    return Reply(records=texts, nxdomain=reply.nxdomain)
