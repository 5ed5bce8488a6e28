"""Settings: one frozen dataclass, read from ``SCANQ_*`` environment variables and CLI flags.

Every field has a flag of the same name (``lease_seconds`` ↔ ``--lease-seconds``
↔ ``SCANQ_LEASE_SECONDS``); ``cli.py`` builds the flags from these fields.
A bad value raises ``ConfigError`` naming the setting.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Union, get_args, get_origin, get_type_hints

from scanq.exceptions import ConfigError

ENV_PREFIX = "SCANQ_"
# One default store for `./run` and for `scanq` run by hand from the same directory (the file and its
# directory are created on first use).
DEFAULT_DATABASE_URL = "sqlite:///data/scanq.db"

# Names the original three-part system used; they keep working as fallbacks.
LEGACY_ENV = {
    "INGEST_PORT": "ingest_port",
    "STATUS_PORT": "status_port",
    "MIN_SLEEP": "mock_min_sleep",
    "MAX_SLEEP": "mock_max_sleep",
    "CHANCE_OF_FAILURE": "mock_failure_rate",
}


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every option of every scanq process. Read with ``Settings.from_env``; flags override with ``replace``."""

    database_url: str = _setting(DEFAULT_DATABASE_URL, "Store URL: sqlite:///path, postgresql://… or mongodb://…")
    host: str = _setting("127.0.0.1", "Address the HTTP services listen on")
    ingest_port: int = _setting(10550, "Ingest service port")
    status_port: int = _setting(10551, "Status service port")
    ingest_url: str = _setting("http://127.0.0.1:10550", "Ingest service URL (CLI client, dashboard)")
    status_url: str = _setting("http://127.0.0.1:10551", "Status service URL (CLI client)")
    workers: int = _setting(2, "Worker processes started by `scanq up`")
    concurrency: int = _setting(64, "Scans one worker runs at once")
    lease_seconds: float = _setting(30.0, "How long a claim is held without a heartbeat")
    heartbeat_seconds: float = _setting(10.0, "How often a worker renews its leases")
    reaper_seconds: float = _setting(5.0, "How often a worker requeues expired leases")
    poll_seconds: float = _setting(5.0, "Fallback poll interval when no wake-up arrives")
    max_attempts: int = _setting(3, "Attempts a scan gets by default (transient failures, lost workers)")
    retry_base_seconds: float = _setting(1.0, "First retry backoff; doubles each attempt, with jitter")
    retry_max_seconds: float = _setting(300.0, "Largest retry backoff")
    scan_timeout_seconds: float = _setting(600.0, "A scan running longer than this fails as transient")
    shutdown_seconds: float = _setting(10.0, "On stop, how long running scans may finish before release")
    max_batch: int = _setting(1000, "Largest POST /scans/batch")
    max_body_bytes: int = _setting(1_048_576, "Largest request body in bytes")
    header_timeout_seconds: float = _setting(10.0, "HTTP: time a client has to send a request's headers")
    body_timeout_seconds: float = _setting(30.0, "HTTP: time a client has to send a request's body")
    max_connections: int = _setting(1000, "HTTP: connections one service process keeps open; more are closed")
    allowed_hosts: tuple[str, ...] = _setting(
        (), "HTTP: Host names served, * for any (empty: loopback names on loopback, else any)"
    )
    allowed_origins: tuple[str, ...] = _setting(
        (), "HTTP: browser origins allowed to submit and cancel besides the dashboard"
    )
    default_scanner: str = _setting("mock", "Scanner used when a request names none")
    mock_min_sleep: float = _setting(1.0, "Mock scanner: shortest run in seconds")
    mock_max_sleep: float = _setting(5.0, "Mock scanner: longest run in seconds")
    mock_failure_rate: float = _setting(0.1, "Mock scanner: probability a scan fails")
    target_allowlist: tuple[str, ...] = _setting((), "CIDRs real scanners may target although private (comma list)")
    scanner_connect_timeout_seconds: float = _setting(3.0, "Real scanners: TCP connect / TLS handshake timeout")
    scanner_plugin_timeout_seconds: float = _setting(120.0, "Real scanners: time one plugin may take on a target")
    scanner_sockets_per_target: int = _setting(16, "Real scanners: connections open at once to one target")
    scanner_nameservers: tuple[str, ...] = _setting((), "Real scanners: DNS servers, ip[:port] list (empty: system)")
    scanner_ca_file: str = _setting("", "Real scanners: extra CA bundle (PEM) trusted besides the system store")
    metrics_port: int = _setting(0, "Worker metrics port (0: off)")
    log_level: str = _setting("INFO", "Log level")
    log_format: str = _setting("text", "Log format: text or json")

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Read ``SCANQ_*`` (then the legacy names) from ``environ``; ``overrides`` (flags) win.

        Args:
            environ: usually ``os.environ``.
            overrides: field values already typed, e.g. from CLI flags; None means "not given".
        """
        values: dict[str, Any] = {}
        legacy_sources: dict[str, str] = {}
        hints = get_type_hints(cls)
        for legacy, name in LEGACY_ENV.items():
            if legacy in environ:
                values[name] = parse_value(name, hints[name], environ[legacy], source=legacy)
                legacy_sources[name] = legacy
        for f in fields(cls):
            env_name = ENV_PREFIX + f.name.upper()
            if env_name in environ:
                values[f.name] = parse_value(f.name, hints[f.name], environ[env_name], source=env_name)
                legacy_sources.pop(f.name, None)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in overrides.keys() & legacy_sources.keys():
            if overrides[name] is not None:
                del legacy_sources[name]
        try:
            return cls(**values)
        except ConfigError as exc:
            # A range check names the SCANQ_ variable; the user may have set the original name instead.
            original = legacy_sources.get(getattr(exc, "setting", ""))
            if original is None:
                raise
            raise ConfigError(f"{original}: {exc.message.split(': ', 1)[1]}", setting=exc.setting) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (None values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


# SCANQ_* names that are not settings but are expected in the environment.
NON_SETTING_ENV_PREFIXES = ("SCANQ_TEST_", "SCANQ_SUPERVISOR_")


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """``SCANQ_*`` variables that name no setting: most likely typos, which would otherwise do nothing."""
    known = {ENV_PREFIX + f.name.upper() for f in fields(Settings)}
    return sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX) and name not in known and not name.startswith(NON_SETTING_ENV_PREFIXES)
    )


def parse_value(name: str, annotation: Any, raw: str, *, source: str) -> Any:
    """Cast one environment string to the setting's type; raise ``ConfigError`` naming ``source``."""
    base = _unwrap_optional(annotation)
    try:
        if base is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            return lowered in ("1", "true", "yes", "on")
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        if get_origin(base) is tuple:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        return raw
    except ValueError:
        expected = getattr(base, "__name__", base)
        raise ConfigError(f"{source}: invalid value {raw!r} for {name} (expected {expected})") from None


def _unwrap_optional(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def is_host(value: str) -> bool:
    """True for an IP address or a syntactically valid host name (RFC 1123: the last label is not all digits).

    ``999.1.1.1`` is neither, and refusing it here spares a DNS query that can only fail.
    """
    try:
        ipaddress.ip_address(value)
        return True
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    return 0 < len(value) <= 253 and all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _check(s: Settings) -> None:
    def fail(name: str, why: str) -> None:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {why} (got {getattr(s, name)!r})", setting=name)

    for name in ("ingest_port", "status_port"):
        if not 0 <= getattr(s, name) <= 65535:
            fail(name, "must be a port number 0-65535")
    if not 0 <= s.metrics_port <= 65535:
        fail("metrics_port", "must be a port number 0-65535 (0: off)")
    for name in ("workers", "concurrency", "max_attempts", "max_batch", "max_body_bytes", "max_connections"):
        if getattr(s, name) < 1:
            fail(name, "must be at least 1")
    if s.scanner_sockets_per_target < 1:
        fail("scanner_sockets_per_target", "must be at least 1")
    for name in (
        "lease_seconds",
        "heartbeat_seconds",
        "reaper_seconds",
        "poll_seconds",
        "retry_base_seconds",
        "retry_max_seconds",
        "scan_timeout_seconds",
        "scanner_connect_timeout_seconds",
        "scanner_plugin_timeout_seconds",
        "header_timeout_seconds",
        "body_timeout_seconds",
    ):
        if not getattr(s, name) > 0:
            fail(name, "must be greater than 0")
    if s.shutdown_seconds < 0:
        fail("shutdown_seconds", "must not be negative")
    if s.heartbeat_seconds >= s.lease_seconds:
        fail("heartbeat_seconds", f"must be shorter than lease_seconds ({s.lease_seconds})")
    if s.mock_min_sleep < 0:
        fail("mock_min_sleep", "must not be negative")
    if s.mock_max_sleep < s.mock_min_sleep:
        fail("mock_max_sleep", f"must be at least mock_min_sleep ({s.mock_min_sleep})")
    if not 0.0 <= s.mock_failure_rate <= 1.0:
        fail("mock_failure_rate", "must be a probability between 0 and 1")
    if s.log_format not in ("text", "json"):
        fail("log_format", "must be text or json")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        fail("log_level", "must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
    for cidr in s.target_allowlist:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            fail("target_allowlist", f"{cidr!r} is not a CIDR")
    if not is_host(s.host):
        fail("host", "must be an IP address or a host name")
    for name in s.allowed_hosts:
        if name != "*" and not is_host(name.strip("[]")):
            fail("allowed_hosts", f"{name!r} is not a host name or address (or *)")
    for origin in s.allowed_origins:
        if not re.fullmatch(r"https?://[^/?#\s]+", origin.rstrip("/")):
            fail("allowed_origins", f"{origin!r} is not an origin such as https://console.example:8443")
    if "://" not in s.database_url:
        fail("database_url", f"must be a URL such as {DEFAULT_DATABASE_URL}")
