"""Follow HTTP redirects by hand, checking every hop against the target rules.

Each ``Location`` is parsed like a submitted target (``parse_target``), its name
resolved and every address checked (``open_session``) before anything is sent,
so a redirect to ``http://169.254.169.254/`` or to a name that resolves inside
the network ends the chain instead of being followed. Hops on the same host
reuse the session (same checked address, same socket limit).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urljoin

from scanq.exceptions import ScannerError, ValidationError
from scanq.scanners.net import httpwire
from scanq.scanners.net.addresses import AddressPolicy
from scanq.scanners.net.connect import ConnectFailed, Session, open_session, probing_context
from scanq.scanners.net.settings import NetSettings
from scanq.scanners.net.targets import ParsedTarget, parse_target

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, kw_only=True, slots=True)
class Hop:
    """One request of a chain, and where the server sent us next."""

    url: str
    session: Session
    port: int
    response: httpwire.HttpResponse

    @property
    def is_https(self) -> bool:
        return self.url.startswith("https://")


@dataclass(kw_only=True, slots=True)
class Chain:
    """The requests of one fetch; ``stopped`` says why it ended before a final answer (None: it did not)."""

    hops: list[Hop] = field(default_factory=list)
    stopped: str | None = None
    closed: bool = False

    @property
    def final(self) -> Hop | None:
        """The last answer, when it is not a redirect we declined or failed to follow."""
        if self.stopped is not None or not self.hops:
            return None
        return self.hops[-1]

    def describe(self) -> list[dict[str, object]]:
        """The chain as JSON for ``details``."""
        out: list[dict[str, object]] = [{"url": h.url, "status": h.response.status} for h in self.hops]
        if self.stopped is not None:
            out.append({"stopped": self.stopped})
        return out


async def fetch(
    session: Session,
    *,
    target: ParsedTarget,
    scheme: str,
    port: int,
    settings: NetSettings,
    policy: AddressPolicy,
) -> Chain:
    """GET ``scheme://target:port/path`` and follow up to ``MAX_REDIRECTS`` checked redirects."""
    chain = Chain()
    current, current_scheme, current_port = session, scheme, port
    url = _url(target, scheme=scheme, port=port, path=target.path)
    path = target.path
    for _ in range(MAX_REDIRECTS + 1):
        tls = probing_context(permissive=True) if current_scheme == "https" else None
        try:
            response = await httpwire.request(current, port=current_port, tls=tls, path=path)
        except ConnectFailed as exc:
            chain.stopped = str(exc)
            chain.closed = exc.kind == "closed" and not chain.hops
            return chain
        except httpwire.HttpError as exc:
            chain.stopped = f"{url}: {exc}"
            return chain
        chain.hops.append(Hop(url=url, session=current, port=current_port, response=response))
        location = response.header("location")
        if response.status not in REDIRECT_STATUSES or not location:
            return chain
        next_url = urljoin(url, location)
        try:
            hop_target = parse_target(next_url, policy=policy, allow_url=True)
        except ValidationError as exc:  # TargetRefused included
            chain.stopped = f"redirect to {next_url} refused: {exc.message}"
            return chain
        if hop_target.host != current.host:
            try:
                current = await open_session(hop_target, settings=settings, policy=policy)
            except ValidationError as exc:
                chain.stopped = f"redirect to {next_url} refused: {exc.message}"
                return chain
            except ScannerError as exc:
                chain.stopped = f"redirect to {next_url} failed: {exc.message}"
                return chain
        current_scheme = hop_target.scheme or "http"
        current_port = hop_target.port or DEFAULT_PORTS[current_scheme]
        path = hop_target.path
        url = _url(hop_target, scheme=current_scheme, port=current_port, path=path)
    chain.stopped = f"more than {MAX_REDIRECTS} redirects"
    return chain


def _url(target: ParsedTarget, *, scheme: str, port: int, path: str) -> str:
    host = f"[{target.host}]" if target.ip is not None and target.ip.version == 6 else target.host
    suffix = "" if port == DEFAULT_PORTS[scheme] else f":{port}"
    return f"{scheme}://{host}{suffix}{path}"
