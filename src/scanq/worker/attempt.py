"""One attempt: run the scanner plugin, and turn whatever happens (but cancellation) into a ``Finish``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import msgspec

from scanq.backoff import backoff_delay
from scanq.config import Settings
from scanq.exceptions import ScannerError, TransientScanError, UnknownScanner
from scanq.lifecycle import after_failure
from scanq.models import Finish, Lease, Outcome, Scan
from scanq.record_makers import make_finish
from scanq.scanners import ScannerRegistry

logger = logging.getLogger("scanq.worker")


class AttemptRunner:
    """Runs attempts through the scanner plugins.

    Args:
        scanners: the plugins of this process.
        settings: the retry backoff (``retry_base_seconds``, ``retry_max_seconds``).
        worker_id: for the log lines.
        on_retry: told the delay (seconds) of every retry scheduled, so the claim loop wakes when it is due.
    """

    __slots__ = ("_on_retry", "_settings", "scanners", "worker_id")

    def __init__(
        self, scanners: ScannerRegistry, *, settings: Settings, worker_id: str, on_retry: Callable[[float], None]
    ) -> None:
        self.scanners = scanners
        self.worker_id = worker_id
        self._settings = settings
        self._on_retry = on_retry

    async def run(self, scan: Scan, lease: Lease) -> Finish:
        """Run the scanner; turn every outcome except cancellation into a ``Finish``.

        The scan timeout is not enforced here but by ``leases.timeout_loop``.
        """
        try:
            scanner = self.scanners.get(scan.scanner)
            result = await scanner.run(scan_id=scan.scan_id, target=scan.target, options=scan.options)
        except TransientScanError as exc:
            return self.failed(scan, lease, str(exc) or type(exc).__name__)
        except TimeoutError as exc:  # the scanner's own timeout (a connect, a read): may pass too
            return self.failed(scan, lease, str(exc) or "timed out")
        except (ScannerError, UnknownScanner) as exc:
            return Finish(lease=lease, outcome=Outcome.ERROR, error=str(exc) or type(exc).__name__)
        except Exception as exc:
            logger.error(
                "scan %s: scanner %s crashed",
                scan.scan_id,
                scan.scanner,
                exc_info=True,
                extra={"scan_id": scan.scan_id, "worker": self.worker_id, "attempt": lease.attempt},
            )
            return Finish(lease=lease, outcome=Outcome.ERROR, error=f"{type(exc).__name__}: {exc}")
        # Checked here, per scan: a result the store cannot encode would otherwise fail a whole finish batch.
        try:
            # A dict is the usual result: its type is checked first, sparing Mapping's ABC check (per scan).
            if type(result) is not dict and not isinstance(result, Mapping):
                raise TypeError(f"expected a JSON object, got {type(result).__name__}")
            msgspec.json.encode(result)
        except (TypeError, msgspec.EncodeError) as exc:
            return Finish(
                lease=lease, outcome=Outcome.ERROR, error=f"scanner {scan.scanner} returned an invalid result: {exc}"
            )
        return make_finish(lease, Outcome.COMPLETE, result, None, None)

    def failed(self, scan: Scan, lease: Lease, error: str) -> Finish:
        """A failure that may pass (transient error, timeout): retried after a backoff while attempts are left.

        Whether attempts are left is ``lifecycle.after_failure``'s rule.
        """
        if after_failure(attempt=lease.attempt, max_attempts=scan.max_attempts) is Outcome.ERROR:
            return Finish(lease=lease, outcome=Outcome.ERROR, error=error)
        delay = backoff_delay(
            lease.attempt, base_s=self._settings.retry_base_seconds, max_s=self._settings.retry_max_seconds
        )
        self._on_retry(delay)
        # By this process's clock, and the finish is flushed later: the store never makes the retry
        # claimable before its own now at the finish (lifecycle.AvailableChange.RETRY_AT), so a lagging
        # clock or a full-jitter delay near zero cannot start the next attempt before this one ended.
        return Finish(
            lease=lease,
            outcome=Outcome.RETRY,
            error=error,
            retry_at=datetime.now(UTC) + timedelta(seconds=delay),
        )


__all__ = ["AttemptRunner"]
