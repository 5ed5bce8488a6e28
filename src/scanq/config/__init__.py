"""Settings: frozen dataclasses read from ``SCANQ_*`` environment variables and CLI flags.

``Settings`` holds the options of scanq itself, plus one section per scanner
plugin that declares settings (``Scanner.settings_class``, read under its
``settings_namespace``). Every setting has one key naming its flag and its
variable: ``lease_seconds`` ↔ ``--lease-seconds`` ↔ ``SCANQ_LEASE_SECONDS``,
and in the ``mock`` section ``min_sleep`` ↔ ``mock_min_sleep`` ↔
``--mock-min-sleep`` ↔ ``SCANQ_MOCK_MIN_SLEEP``; some also answer to the
original system's names (``INGEST_PORT``, ``MIN_SLEEP``). Flags win over
``SCANQ_*``, which win over the original names; a bad value raises
``ConfigError`` naming where it came from. ``cli.py`` builds the flags from
``setting_specs()``. ``sections.py`` holds the parts a section is declared
with, ``values.py`` the text ↔ value rules (both re-exported here), ``checks.py``
the rules a ``Settings`` is checked against when it is made.

config imports no plugin: it finds the sections through the ``scanq.scanners``
entry points (as the registry finds the plugins), so plugins depend on config
and never the reverse.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import cache
from importlib.metadata import entry_points
from typing import Any, get_type_hints

from scanq.config.checks import AUTH_MODES, check_settings
from scanq.config.sections import ENV_PREFIX, PluginSettings, SectionT, SettingSpec, setting, setting_error
from scanq.config.values import format_value, is_host, is_loopback, parse_value
from scanq.exceptions import ConfigError

SCANNER_ENTRY_POINTS = "scanq.scanners"
# SCANQ_* names that are not settings but are expected in the environment.
NON_SETTING_ENV_PREFIXES = ("SCANQ_TEST_", "SCANQ_SUPERVISOR_")
# One default store for `./run` and for `scanq` run by hand from the same directory (the file and its
# directory are created on first use).
DEFAULT_DATABASE_URL = "sqlite:///data/scanq.db"

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every option of a scanq process. Read with ``Settings.from_env``; flags override with ``replace``."""

    database_url: str = setting(DEFAULT_DATABASE_URL, "Store URL: sqlite:///path, postgresql://… or mongodb://…")
    host: str = setting("127.0.0.1", "Address the HTTP services listen on")
    ingest_port: int = setting(10550, "Ingest service port", aliases=("INGEST_PORT",))
    status_port: int = setting(10551, "Status service port", aliases=("STATUS_PORT",))
    ingest_url: str = setting("http://127.0.0.1:10550", "Ingest service URL (CLI client, dashboard)")
    status_url: str = setting("http://127.0.0.1:10551", "Status service URL (CLI client)")
    workers: int = setting(2, "Worker processes started by `scanq up`")
    ingest_processes: int = setting(1, "Ingest processes sharing --ingest-port (scanq up; scanq ingest --processes)")
    status_processes: int = setting(1, "Status processes sharing --status-port (scanq up; scanq status --processes)")
    concurrency: int = setting(64, "Scans one worker runs at once")
    lease_seconds: float = setting(30.0, "How long a claim is held without a heartbeat")
    heartbeat_seconds: float = setting(10.0, "How often a worker renews its leases")
    reaper_seconds: float = setting(5.0, "How often a worker requeues expired leases")
    poll_seconds: float = setting(5.0, "Fallback poll interval when no wake-up arrives")
    max_attempts: int = setting(3, "Attempts a scan gets by default (transient failures, lost workers)")
    retry_base_seconds: float = setting(1.0, "First retry backoff; doubles each attempt, with jitter")
    retry_max_seconds: float = setting(300.0, "Largest retry backoff")
    scan_timeout_seconds: float = setting(600.0, "A scan running longer than this fails as transient")
    max_per_target: int = setting(2, "Most scans Running against one target host across all workers (0: no cap)")
    shutdown_seconds: float = setting(10.0, "On stop, how long running scans may finish before release")
    max_batch: int = setting(1000, "Largest POST /scans/batch")
    max_body_bytes: int = setting(1_048_576, "Largest request body in bytes")
    header_timeout_seconds: float = setting(10.0, "HTTP: time a client has to send a request's headers")
    body_timeout_seconds: float = setting(30.0, "HTTP: time a client has to send a request's body")
    max_connections: int = setting(1000, "HTTP: connections one service process keeps open; more are closed")
    allowed_hosts: tuple[str, ...] = setting(
        (), "HTTP: Host names served, * for any (empty: loopback names on loopback, else any)"
    )
    allowed_origins: tuple[str, ...] = setting(
        (), "HTTP: browser origins allowed to submit and cancel besides the dashboard"
    )
    auth: str = setting("auto", "API tokens: auto (required unless every service listens on loopback), tokens, off")
    insecure_no_auth: bool = setting(False, "Allow --auth off on a non-loopback address (anyone there sees every scan)")
    tls_cert: str = setting("", "HTTPS: certificate chain file (PEM); with --tls-key the services serve HTTPS only")
    tls_key: str = setting("", "HTTPS: private key file (PEM) of --tls-cert")
    token: str = setting("", "CLI: the API token sent to the services (Authorization: Bearer)")
    default_scanner: str = setting("mock", "Scanner used when a request names none")
    metrics_port: int = setting(0, "Worker metrics port (0: off)")
    retention: tuple[str, ...] = setting((), "Keep finished scans this long: Complete=30d,Error=90d (default: forever)")
    retention_archive: str = setting("", "Directory retention writes each batch to (NDJSON, gzip) before deleting it")
    event_retention_seconds: float = setting(
        3600.0, "Keep scan events (live streams resume from them, webhooks are made from them) this long"
    )
    delivery_retention_seconds: float = setting(
        604800.0, "Keep ended webhook deliveries (delivered or failed; listed with their last error) this long"
    )
    webhooks: bool = setting(
        True,
        "Webhooks: this worker sends them, ingest takes callback_url (--no-webhooks: neither; events still pruned)",
    )
    webhook_concurrency: int = setting(
        64, "Webhooks: deliveries one worker sends at once (a quarter of them at most to one endpoint)"
    )
    webhook_connect_timeout_seconds: float = setting(
        5.0, "Webhooks: time to resolve an endpoint's host, connect and finish the TLS handshake (each)"
    )
    webhook_timeout_seconds: float = setting(10.0, "Webhooks: time an endpoint has to answer a delivery once connected")
    webhook_backoff_base_seconds: float = setting(
        1.0, "Webhooks: first retry delay (ceiling); doubles per attempt with full jitter, at most an hour"
    )
    webhook_max_age_seconds: float = setting(
        86400.0, "Webhooks: a delivery still failing this long after its event is marked failed"
    )
    webhook_allowlist: tuple[str, ...] = setting(
        (), "Webhooks: CIDRs endpoints may resolve to although private (plain http allowed there only)"
    )
    webhook_ca_file: str = setting("", "Webhooks: CA certificates (PEM) deliveries trust instead of the system's")
    log_level: str = setting("INFO", "Log level")
    log_format: str = setting("text", "Log format: text or json")
    # The plugins' sections: not a setting itself, each section's fields are.
    plugins: PluginSettings = field(default_factory=PluginSettings)

    def __post_init__(self) -> None:
        check_settings(self)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, read_plugins: bool = True, **overrides: Any) -> Settings:
        """Read ``SCANQ_*`` (then the original names) from ``environ``; ``overrides`` (flags) win.

        Args:
            environ: usually ``os.environ``.
            read_plugins: also read the installed plugins' sections (False: they keep their defaults and no
                plugin is imported; for commands that run no scanner).
            overrides: values by setting key (``lease_seconds``, ``mock_min_sleep``), already typed, e.g. from
                CLI flags; None means "not given".
        """
        sections = plugin_sections() if read_plugins else {}
        specs = setting_specs(sections)
        unknown = set(overrides) - {spec.key for spec in specs}
        if unknown:
            raise TypeError(f"not a setting: {', '.join(sorted(unknown))}")
        plugins = PluginSettings(*(read_section(section, specs, environ, overrides) for section in sections))
        settings = read_section(cls, specs, environ, overrides, plugins=plugins)
        if read_plugins:
            check_default_scanner(settings.default_scanner, installed=installed_scanner_classes())
        return settings

    @property
    def auth_required(self) -> bool:
        """Whether the HTTP services require API tokens: ``tokens``, or ``auto`` off loopback."""
        return self.auth == "tokens" or (self.auth == "auto" and not is_loopback(self.host))

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (None values ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_environ(self) -> dict[str, str]:
        """Every setting as the ``SCANQ_*`` variable that reproduces it, e.g. in a child process."""
        return {spec.env: format_value(self.value_of(spec)) for spec in setting_specs(plugin_sections())}

    def value_of(self, spec: SettingSpec) -> Any:
        """The value of one setting, core or plugin."""
        section = self if spec.section is Settings else self.plugins[spec.section]
        return getattr(section, spec.field)


@cache
def installed_scanner_classes() -> dict[str, type[Any]]:
    """Every class in the ``scanq.scanners`` entry-point group, by name (the plugins' modules are imported).

    A plugin whose module cannot be imported (say the real scanners without the
    ``scanners`` extra's libraries) is left out with a warning, so it cannot take
    the other plugins down with it.
    """
    found: dict[str, type[Any]] = {}
    for ep in entry_points(group=SCANNER_ENTRY_POINTS):
        try:
            cls = ep.load()
        except ImportError as exc:
            logger.warning("scanner plugin %s not available: %s", ep.name, exc)
            continue
        if not isinstance(cls, type):
            raise TypeError(f"entry point {ep.name!r} in {SCANNER_ENTRY_POINTS} is not a class")
        found[ep.name] = cls
    return found


def check_default_scanner(name: str, *, installed: Iterable[str]) -> None:
    """Raise ``ConfigError`` unless ``name`` is an installed scanner: else every request naming none is a 422."""
    names = sorted(installed)
    if name not in names:
        raise ConfigError(
            f"{ENV_PREFIX}DEFAULT_SCANNER: unknown scanner {name!r} (installed: {', '.join(names) or 'none'})",
            setting="default_scanner",
        )


def plugin_sections(classes: Iterable[type[Any]] | None = None) -> dict[type[Any], str]:
    """The settings section of each plugin class that declares one: section class → namespace, by namespace.

    Args:
        classes: scanner classes (default: the installed ones). Each may name a ``settings_class`` and a
            ``settings_namespace`` (default: its ``name``); plugins may share a section under one namespace.
    """
    sections: dict[type[Any], str] = {}
    owners: dict[str, type[Any]] = {}
    for cls in installed_scanner_classes().values() if classes is None else classes:
        section = getattr(cls, "settings_class", None)
        if section is None:
            continue
        namespace = getattr(cls, "settings_namespace", None) or cls.name
        # One namespace per section and one section per namespace, else two plugins would read each other's flags.
        if sections.setdefault(section, namespace) != namespace or owners.setdefault(namespace, section) is not section:
            raise TypeError(f"scanner {cls.name!r}: settings namespace {namespace!r} clashes with another plugin's")
    return dict(sorted(sections.items(), key=lambda item: item[1]))


def section_specs(section: type[Any], namespace: str = "") -> tuple[SettingSpec, ...]:
    """The settings of one section, in field order: the fields made with ``setting``."""
    hints = get_type_hints(section)
    return tuple(
        SettingSpec(
            key=f.metadata["key"] or (f"{namespace}_{f.name}" if namespace else f.name),
            field=f.name,
            section=section,
            annotation=hints[f.name],
            default=f.default,
            help=f.metadata["help"],
            aliases=f.metadata["aliases"],
        )
        for f in fields(section)
        if "help" in f.metadata
    )


def setting_specs(sections: Mapping[type[Any], str] | None = None) -> tuple[SettingSpec, ...]:
    """Every setting: the core ones, then each plugin section's (default: the installed plugins').

    Raise ``TypeError`` when two settings share a key (a plugin taking a name already in use).
    """
    found = plugin_sections() if sections is None else sections
    specs = [*section_specs(Settings)]
    for cls, namespace in found.items():
        specs += section_specs(cls, namespace)
    keys = [spec.key for spec in specs]
    if len(set(keys)) != len(keys):
        raise TypeError(f"two settings share the key {next(k for k in keys if keys.count(k) > 1)!r}")
    return tuple(specs)


def read_section(
    section: type[SectionT],
    specs: Iterable[SettingSpec],
    environ: Mapping[str, str],
    overrides: Mapping[str, Any],
    **fixed: Any,
) -> SectionT:
    """Build one section from its variables (original names first, then ``SCANQ_*``) and ``overrides`` by key.

    A value the section refuses is a ``ConfigError`` naming where it came from: the original name
    when that set it, else the ``SCANQ_*`` variable (also for a flag, whose value already parsed).
    """
    own = {spec.field: spec for spec in specs if spec.section is section}
    values: dict[str, Any] = {}
    original: dict[str, str] = {}
    for spec in own.values():
        for alias in spec.aliases:
            if alias in environ:
                values[spec.field] = parse_value(spec.key, spec.annotation, environ[alias], source=alias)
                original[spec.field] = alias
    for spec in own.values():
        if spec.env in environ:
            values[spec.field] = parse_value(spec.key, spec.annotation, environ[spec.env], source=spec.env)
            original.pop(spec.field, None)
        if overrides.get(spec.key) is not None:
            values[spec.field] = overrides[spec.key]
            original.pop(spec.field, None)
    try:
        return section(**values, **fixed)
    except ConfigError as exc:
        refused = own.get(getattr(exc, "setting", ""))
        if refused is None:
            raise
        why = exc.message.split(": ", 1)[-1]
        raise ConfigError(f"{original.get(refused.field, refused.env)}: {why}", setting=refused.key) from None


def unknown_env_names(environ: Mapping[str, str]) -> list[str]:
    """``SCANQ_*`` variables that name no setting: most likely typos, which would otherwise do nothing.

    The plugins are imported only when a variable is not a core setting.
    """
    candidates = {
        name for name in environ if name.startswith(ENV_PREFIX) and not name.startswith(NON_SETTING_ENV_PREFIXES)
    }
    candidates -= {spec.env for spec in section_specs(Settings)}
    if candidates:
        candidates -= {spec.env for spec in setting_specs()}
    return sorted(candidates)


__all__ = [
    "AUTH_MODES",
    "DEFAULT_DATABASE_URL",
    "ENV_PREFIX",
    "NON_SETTING_ENV_PREFIXES",
    "SCANNER_ENTRY_POINTS",
    "PluginSettings",
    "SettingSpec",
    "Settings",
    "check_default_scanner",
    "format_value",
    "installed_scanner_classes",
    "is_host",
    "is_loopback",
    "parse_value",
    "plugin_sections",
    "read_section",
    "section_specs",
    "setting",
    "setting_error",
    "setting_specs",
    "unknown_env_names",
]
