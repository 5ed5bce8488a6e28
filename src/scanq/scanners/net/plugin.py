"""The shared frame of the real (network) scanner plugins.

A ``TargetScanner`` subclass says which targets it takes and how to read its
options, and implements ``check`` on an already checked target. This base does
the rest the same way for every plugin: submit-time validation (resolving the
target when the plugin connects to it), re-validation and resolution at run
time, the per-plugin timeout, and the mapping of failures to ``ScannerError``
(permanent) or ``TransientScanError`` (retried).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from scanq.exceptions import ScannerError, TargetRefused, TransientScanError, ValidationError
from scanq.scanners.base import Scanner
from scanq.scanners.net.addresses import AddressPolicy
from scanq.scanners.net.connect import Session, open_session
from scanq.scanners.net.findings import PluginReport, ScanReport
from scanq.scanners.net.hostsfile import HostsFile
from scanq.scanners.net.settings import NAMESPACE, NetSettings
from scanq.scanners.net.targets import ParsedTarget, check_resolution, parse_target
from scanq.scanners.settings import ScannerContext

logger = logging.getLogger(__name__)

OptionsT = TypeVar("OptionsT")


class TargetScanner(Scanner, Generic[OptionsT]):
    """A plugin that checks one network target and reports findings.

    Class attributes:
        allow_url: the plugin accepts an http(s) URL as target.
        connects: the plugin connects to the target (so it is resolved and checked); ``dns`` only asks a resolver.
        accepts_ip: the plugin accepts an IP address as target.
    """

    allow_url: ClassVar[bool] = False
    connects: ClassVar[bool] = True
    accepts_ip: ClassVar[bool] = True
    settings_class = NetSettings
    settings_namespace = NAMESPACE
    settings: NetSettings

    def __init__(self, context: ScannerContext) -> None:
        super().__init__(context)
        try:
            self.policy = AddressPolicy.from_cidrs(self.settings.target_allowlist)
        except ValueError as exc:
            raise ValidationError(f"target_allowlist: {exc}") from None
        # The operator's names: a plugin that connects resolves them as listed (see targets.py).
        self.hosts = HostsFile(self.settings.hosts_file) if self.settings.hosts_file and self.connects else None

    # --- what a subclass provides -------------------------------------------------

    @abc.abstractmethod
    def parse_options(self, options: Mapping[str, Any]) -> OptionsT:
        """Read and check this plugin's options; raise ``ValidationError`` naming the bad one."""

    @abc.abstractmethod
    async def check(self, *, target: ParsedTarget, session: Session | None, options: OptionsT) -> PluginReport:
        """Run the checks on a target that passed the rules (``session`` is None when ``connects`` is false)."""

    # --- the Scanner interface ----------------------------------------------------

    def parse(self, target: str | None) -> ParsedTarget:
        """Parse and statically check a target for this plugin; raise ``ValidationError``/``TargetRefused``."""
        parsed = parse_target(target, policy=self.policy, allow_url=self.allow_url, hosts=self.hosts)
        if parsed.is_ip and not self.accepts_ip:
            raise ValidationError(f"the {self.name} scanner needs a domain name, not an IP address")
        return parsed

    async def validate(self, *, target: str | None, options: Mapping[str, Any]) -> str | None:
        parsed = self.parse(target)
        opts = self.parse_options(options)
        await self.check_addresses(parsed, opts)  # last: the only step with I/O
        return str(parsed)

    def politeness_key(self, *, target: str | None) -> str | None:
        """The target's host: the per-target cap counts every scan of one host, whichever plugin runs it."""
        if target is None:
            return None
        return self.parse(target).host

    async def check_addresses(self, target: ParsedTarget, options: OptionsT) -> None:
        """Submit time: resolve the target and check every address, when this plugin connects to it.

        Raise ``TargetRefused`` or ``ValidationError`` with the reason (see ``targets.check_resolution``).
        """
        if self.connects:
            await self.check_target_resolution(target)

    async def check_target_resolution(self, target: ParsedTarget, *, allow_unresolvable: bool = False) -> None:
        """``targets.check_resolution`` with this process's rules, name servers and connect timeout."""
        await check_resolution(
            target,
            policy=self.policy,
            nameservers=self.settings.nameservers,
            timeout_s=self.settings.connect_timeout_seconds,
            allow_unresolvable=allow_unresolvable,
            hosts=self.hosts,
        )

    @property
    def plugin_timeout_s(self) -> float:
        """The time one plugin may take on a target, within the scan's own limit."""
        return min(self.settings.plugin_timeout_seconds, self.context.scan_timeout_seconds)

    async def run(self, *, scan_id: str, target: str | None, options: Mapping[str, Any]) -> Mapping[str, Any]:
        parsed, opts = self._revalidate(target, options)
        session = await self.open(parsed)
        timeout_s = self.plugin_timeout_s
        try:
            report = await run_with_timeout(self.check(target=parsed, session=session, options=opts), timeout_s)
        except TargetRefused as exc:
            raise ScannerError(exc.message) from None
        addresses = tuple(str(a) for a in session.addresses) if session is not None else ()
        logger.info("scan %s: %s on %s: %d findings", scan_id, self.name, parsed, len(report.findings))
        return ScanReport(
            scanner=self.name,
            target=str(parsed),
            addresses=addresses,
            plugins={self.name: "ok"},
            findings=tuple(report.findings),
            details={self.name: report.details} if report.details else {},
        ).to_dict()

    def _revalidate(self, target: str | None, options: Mapping[str, Any]) -> tuple[ParsedTarget, OptionsT]:
        # Run time is a second gate: the rules or the allow-list may have changed since submission.
        try:
            return self.parse(target), self.parse_options(options)
        except ValidationError as exc:
            raise ScannerError(exc.message) from None

    async def open(self, target: ParsedTarget) -> Session | None:
        """Resolve and check ``target`` when this plugin connects; a refusal is permanent."""
        if not self.connects:
            return None
        try:
            return await open_session(target, settings=self.settings, policy=self.policy, hosts=self.hosts)
        except TargetRefused as exc:
            raise ScannerError(exc.message) from None


async def run_with_timeout(coro: Coroutine[Any, Any, PluginReport], timeout_s: float) -> PluginReport:
    """Await a plugin's ``check`` with its time limit; a timeout is transient."""
    try:
        async with asyncio.timeout(timeout_s):
            return await coro
    except TimeoutError:
        raise TransientScanError(f"plugin timed out after {timeout_s:g}s") from None


def reject_unknown(options: Mapping[str, Any], known: set[str], *, plugin: str) -> None:
    """Raise ``ValidationError`` naming any option this plugin does not know."""
    if not isinstance(options, Mapping):
        raise ValidationError(f"{plugin} options must be a JSON object")
    unknown = sorted(set(options) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise ValidationError(f"unknown {plugin} option(s): {', '.join(unknown)} (allowed: {allowed})")


def port_option(options: Mapping[str, Any], key: str, default: int) -> int:
    """An integer port option in 1-65535, or ``default``; raise ``ValidationError``."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValidationError(f"option {key!r} must be a port number 1-65535 (got {value!r})")
    return value
