"""The ``scanq`` command line: one click group, every option generated from the settings.

Each setting is a flag named after its key that falls back to its ``SCANQ_*``
variable (``flags.py``: ``--lease-seconds`` ↔ ``SCANQ_LEASE_SECONDS``); flags
win over ``SCANQ_*``, which win over the original names (``INGEST_PORT`` …).
A bad value exits 2 with one line naming the setting.

Commands stay thin: parse, build Settings, configure logging, call one function.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar

import click

from scanq import client
from scanq.config import Settings
from scanq.exceptions import ConfigError, ScanqError, StartupError
from scanq.flags import CORE_SPECS, SettingsCommand, with_settings
from scanq.models import ScanStatus
from scanq.watch import DEFAULT_WATCH_S, watch
from scanq.webhook_commands import webhooks

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

LOGGING = ("log_level", "log_format")
STORE = ("database_url",)
SCANNER = ("default_scanner",)
HTTP = (
    "host",
    "ingest_port",
    "status_port",
    "ingest_url",
    "status_url",
    "max_batch",
    "max_body_bytes",
    "max_attempts",
    "header_timeout_seconds",
    "body_timeout_seconds",
    "max_connections",
    "allowed_hosts",
    "allowed_origins",
    "auth",
    "insecure_no_auth",
    "tls_cert",
    "tls_key",
    # Ingest checks a webhook URL at registration with the workers' rules (allow-list, resolution timeout).
    "webhook_allowlist",
    "webhook_connect_timeout_seconds",
    "webhooks",  # --no-webhooks: ingest refuses callback_url
)
WORKER = (
    "concurrency",
    "lease_seconds",
    "heartbeat_seconds",
    "reaper_seconds",
    "poll_seconds",
    "retry_base_seconds",
    "retry_max_seconds",
    "scan_timeout_seconds",
    "max_per_target",
    "shutdown_seconds",
    "metrics_port",
    "retention",
    "retention_archive",
    "event_retention_seconds",
    "delivery_retention_seconds",
    "webhooks",
    "webhook_concurrency",
    "webhook_connect_timeout_seconds",
    "webhook_timeout_seconds",
    "webhook_backoff_base_seconds",
    "webhook_max_age_seconds",
    "webhook_allowlist",
    "webhook_ca_file",
)
CLIENT = ("ingest_url", "status_url", "max_batch", "token", *LOGGING)
SERVICE_SETTINGS = (*STORE, *HTTP, *SCANNER, *LOGGING)
WORKER_SETTINGS = (*STORE, *WORKER, *SCANNER, *LOGGING)
ALL_SETTINGS = tuple(CORE_SPECS)


class _SettingError(click.ClickException):
    exit_code = 2


class _StartupFailure(click.ClickException):
    exit_code = StartupError.exit_code


class ScanqGroup(click.Group):
    """The ``scanq`` group: turns scanq errors into one line (exit 2 for a bad setting, 78 cannot listen, else 1)."""

    command_class = SettingsCommand

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise _SettingError(exc.message) from None
        except StartupError as exc:
            raise _StartupFailure(exc.message) from None
        except ScanqError as exc:
            raise click.ClickException(exc.message) from None


def run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run the command's coroutine on uvloop."""
    import uvloop

    return uvloop.run(coroutine)


@click.group(cls=ScanqGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120})
@click.version_option(package_name="scanq", prog_name="scanq", message="%(prog)s %(version)s")
def cli() -> None:
    """scanq: a durable queue of cyber scans with an HTTP API.

    Every option also reads the SCANQ_* environment variable shown in --help.
    """


@cli.command(short_help="Run ingest, status and workers until Ctrl-C.")
@with_settings(ALL_SETTINGS, plugins=True)
def up(settings: Settings) -> None:
    """Run ingest, status and --workers worker processes on this machine until Ctrl-C.

    --ingest-processes N and --status-processes N run N processes of that service on its one port.
    """
    from scanq.supervisor import supervise

    sys.exit(run_async(supervise(settings)))


def _processes_option(service: str) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """``--processes N`` of ``scanq ingest`` / ``scanq status``: N processes sharing the service's port."""
    variable = f"SCANQ_{service.upper()}_PROCESSES"
    return click.option(
        "--processes",
        type=click.IntRange(min=1),
        help=f"Processes sharing --{service}-port, restarted when one dies ({variable}, default 1)",
    )


@cli.command(short_help="Run the ingest service (submit, cancel).")
@_processes_option("ingest")
@with_settings(SERVICE_SETTINGS, plugins=True)
def ingest(settings: Settings, *, processes: int | None) -> None:
    """Run the ingest service (submit, cancel) on --ingest-port, in --processes processes."""
    from scanq.supervisor import INGEST, serve_service

    serve_service(settings, INGEST, processes=processes)


@cli.command(short_help="Run the status service (scans, stats, dashboard).")
@_processes_option("status")
@with_settings(SERVICE_SETTINGS, plugins=True)
def status(settings: Settings, *, processes: int | None) -> None:
    """Run the status service (scans, pages, stats, dashboard) on --status-port, in --processes processes."""
    from scanq.supervisor import STATUS, serve_service

    serve_service(settings, STATUS, processes=processes)


@cli.command()
@with_settings(SERVICE_SETTINGS, plugins=True)
def api(settings: Settings) -> None:
    """Run ingest and status routes in one process on --ingest-port."""
    from scanq.api.app import create_api_app
    from scanq.supervisor import serve_app

    serve_app(create_api_app(settings), settings=settings, port=settings.ingest_port)


@cli.command(short_help="Run one worker process.")
@click.option("--burst", is_flag=True, help="Drain the queue, then exit.")
@click.option("--check", is_flag=True, help="Exit 0 if the store is reachable, else 1; run nothing.")
@with_settings(WORKER_SETTINGS, plugins=True)
def worker(settings: Settings, *, burst: bool, check: bool) -> None:
    """Run one worker process: claim scans and run them, --concurrency at once."""
    from scanq.supervisor import follow_supervisor
    from scanq.worker import check_store, run_worker

    if check:
        sys.exit(0 if run_async(check_store(settings)) else 1)
    follow_supervisor()
    run_async(run_worker(settings, burst=burst))


@cli.command()
@click.option("--target", help="What to scan (host, domain, URL, IP).")
@click.option("--scanner", help="Scanner plugin name (default: the service's default).")
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help="Scanner option; repeatable.")
@click.option("--priority", type=int, help="Higher runs first.")
@click.option("--count", type=click.IntRange(min=1), default=1, show_default=True, help="How many scans.")
@click.option(
    "--wait", is_flag=True, help="Follow the scans (server-sent events) until every one finished, then a summary."
)
@click.option("--callback-url", metavar="URL", help="POST each scan's end there (secret: webhooks show callbacks).")
@with_settings(CLIENT)
def submit(settings: Settings, *, option_pairs: Sequence[str], **request: Any) -> None:
    """Submit scans and print their ids."""
    run_async(client.submit(settings, options=client.parse_options(option_pairs), **request))


@cli.command()
@click.argument("scan_id")
@with_settings(CLIENT)
def get(settings: Settings, *, scan_id: str) -> None:
    """Print one scan as JSON."""
    run_async(client.get(settings, scan_id=scan_id))


@cli.command("list")
@click.option(
    "--status",
    "scan_status",
    type=click.Choice(["Accepted", "Running", "Complete", "Error", "Cancelled"], case_sensitive=False),
)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Scans per page.")
@click.option("--cursor", help="Continue after a previous page (printed under the table).")
@with_settings(CLIENT)
def list_command(settings: Settings, *, scan_status: str | None, limit: int, cursor: str | None) -> None:
    """List scans, newest first."""
    run_async(client.list_scans(settings, status=scan_status, limit=limit, cursor=cursor))


@cli.command(short_help="Print the number of scans in each status.")
@click.option(
    "--watch",
    "watch_s",
    type=click.FloatRange(min=0.1),
    is_flag=False,
    flag_value=DEFAULT_WATCH_S,
    default=None,
    metavar="[SECONDS]",
    help=f"Refresh in place every SECONDS (default {DEFAULT_WATCH_S:g}) until Ctrl-C.",
)
@with_settings(CLIENT)
def stats(settings: Settings, *, watch_s: float | None) -> None:
    """Print the number of scans in each status (--watch: keep refreshing)."""
    if watch_s is None:
        run_async(client.stats(settings))
        return
    run_async(watch(lambda: client.stats(settings), interval_s=watch_s, title=f"scanq stats {settings.status_url}"))


@cli.command()
@click.argument("scan_id")
@with_settings(CLIENT)
def cancel(settings: Settings, *, scan_id: str) -> None:
    """Cancel a scan (Accepted: at once; Running: the worker stops it)."""
    run_async(client.cancel(settings, scan_id=scan_id))


@cli.command(short_help="Delete finished scans past their --retention age now.")
@click.option("--dry-run", is_flag=True, help="Count what a pass would delete; delete nothing.")
@with_settings((*STORE, "retention", "retention_archive", *LOGGING))
def prune(settings: Settings, *, dry_run: bool) -> None:
    """Run one --retention pass now: delete finished scans past their age (exit 1 while a worker runs one)."""
    from scanq.worker import make_worker_id
    from scanq.worker.retention import prune_once

    report = run_async(prune_once(settings, owner=f"prune:{make_worker_id()}", dry_run=dry_run))
    click.echo("\n".join(report.lines()))


def _time_option(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from scanq.archive import parse_time

    try:
        return None if value is None else parse_time(value)
    except ScanqError as exc:
        raise click.BadParameter(exc.message) from None


@cli.command(short_help="Write finished scans to stdout as NDJSON.")
@click.option(
    "--status",
    "scan_status",
    type=click.Choice(["Complete", "Error", "Cancelled"], case_sensitive=False),
    help="Only these.",
)
@click.option("--since", metavar="TIME", callback=_time_option, help="Finished at or after TIME (ISO 8601, UTC).")
@click.option("--until", metavar="TIME", callback=_time_option, help="Finished before TIME.")
@click.option("--tenant", help="Only this tenant's scans.")
@click.option("--cursor", metavar="SCAN_ID", help="Resume after this scan id: the last line of a cut-short export.")
@with_settings((*STORE, *LOGGING))
def export(settings: Settings, *, scan_status: str | None, cursor: str | None, **window: Any) -> None:
    """Write finished scans to stdout as NDJSON (history and result included), in scan id order."""
    from scanq.archive import export_to

    status = None if scan_status is None else ScanStatus(scan_status)
    done = run_async(export_to(settings, sys.stdout.buffer, status=status, after=cursor, **window))
    click.echo(f"exported {done.count} scans" + (f"; next --cursor {done.cursor}" if done.cursor else ""), err=True)


@cli.group(cls=ScanqGroup)
def tokens() -> None:
    """Create, list and revoke API tokens (on the store directly)."""


@tokens.command("create")
@click.option("--tenant", required=True, help="The tenant whose scans the token submits and reads.")
@click.option(
    "--scopes",
    default="submit,read,cancel",
    show_default=True,
    help="Comma-separated: submit, read, cancel, webhooks, admin (every tenant).",
)
@click.option("--name", help="What the token is for (shown in listings and on the scans it submits).")
@click.option("--expires", metavar="AGE", help="Lifetime such as 90d, 12h (default: until revoked).")
@with_settings((*STORE, *LOGGING))
def tokens_create(settings: Settings, *, tenant: str, scopes: str, name: str | None, expires: str | None) -> None:
    """Make a token and print its secret, once (stdout; its id goes to stderr)."""
    from scanq import accounts

    run_async(accounts.create_token(settings, tenant=tenant, scopes=scopes.split(","), name=name, expires=expires))


@tokens.command("list")
@click.option("--tenant", help="Only this tenant's tokens.")
@with_settings((*STORE, *LOGGING))
def tokens_list(settings: Settings, *, tenant: str | None) -> None:
    """List tokens (ids, never secrets), revoked and expired ones included."""
    from scanq import accounts

    run_async(accounts.list_tokens(settings, tenant=tenant))


@tokens.command("revoke")
@click.argument("token_id")
@with_settings((*STORE, *LOGGING))
def tokens_revoke(settings: Settings, *, token_id: str) -> None:
    """Revoke a token by id: every service refuses it within a second."""
    from scanq import accounts

    run_async(accounts.revoke_token(settings, token_id=token_id))


@cli.group(cls=ScanqGroup)
def tenants() -> None:
    """Set and list tenant quotas and shares (on the store directly)."""


@tenants.command("set")
@click.argument("tenant")
@click.option("--max-queued", type=int, help="Most unfinished (Accepted + Running) scans at once (default: unlimited).")
@click.option("--rate", type=float, help="Most submissions per second, per ingest process (default: unlimited).")
@click.option(
    "--weight", type=float, default=1.0, show_default=True, help="Share of the workers against other tenants."
)
@with_settings((*STORE, *LOGGING))
def tenants_set(settings: Settings, *, tenant: str, max_queued: int | None, rate: float | None, weight: float) -> None:
    """Set a tenant's quotas and share (replacing them all; a limit left out is unlimited)."""
    from scanq import accounts

    run_async(accounts.set_tenant(settings, tenant=tenant, max_queued=max_queued, rate=rate, weight=weight))


@tenants.command("list")
@with_settings((*STORE, *LOGGING))
def tenants_list(settings: Settings) -> None:
    """List the tenants that have quotas or a weight set."""
    from scanq import accounts

    run_async(accounts.list_tenants(settings))


cli.add_command(webhooks)


def main() -> None:
    """The ``scanq`` console script."""
    cli(prog_name="scanq")


__all__ = ["cli", "main"]
