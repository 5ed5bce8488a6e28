"""Submissions made into the records a store writes: defaults, bounds, the plugin's check, the callback URL's.

The scan service (``scans.py``) calls ``Preparer.prepare`` for one submission and for a batch; nothing
is written before every submission of a call is prepared.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from scanq.config import Settings
from scanq.exceptions import ValidationError
from scanq.ids import new_scan_id
from scanq.models import Caller, NewScan
from scanq.record_makers import make_new_scan
from scanq.scanners import ScannerRegistry
from scanq.scanners.base import Scanner
from scanq.submissions import CallbackGuard, Submission, check_bounds


class Preparer:
    """Prepares submissions on behalf of a caller.

    Args:
        scanners: the plugins that validate and normalise targets.
        settings: the defaults (scanner, max_attempts).
        callbacks: checks a ``callback_url`` (None: a ``callback_url`` is refused).
    """

    def __init__(self, *, scanners: ScannerRegistry, settings: Settings, callbacks: CallbackGuard | None) -> None:
        self._scanners = scanners
        self._settings = settings
        self._callbacks = callbacks

    async def prepare(
        self,
        into: list[NewScan],
        submissions: Sequence[Submission],
        *,
        idempotency_key: str | None,
        now: datetime,
        caller: Caller,
        checked: dict[str, str],
    ) -> None:
        """Append each submission's ``NewScan`` to ``into``, in order; raise at the first refused one.

        A refusal (``ValidationError``, ``TargetRefused``, ``UnknownScanner``) leaves ``into`` holding the
        submissions before it, so ``len(into)`` is the refused one's index. The plugin may refuse the target
        or the options; ``checked`` maps the callback URLs already checked to what is stored.
        """
        default_scanner, default_attempts = self._settings.default_scanner, self._settings.max_attempts
        tenant, actor = caller.tenant, caller.actor
        plugins: dict[str, Scanner] = {}  # one registry look-up per scanner name of a batch
        for submission in submissions:
            check_bounds(submission)
            scanner = submission.scanner or default_scanner
            options = dict(submission.options)
            plugin = plugins.get(scanner)
            if plugin is None:
                plugin = plugins[scanner] = self._scanners.get(scanner)
            target = await plugin.validate(target=submission.target, options=options)
            callback_url = submission.callback_url
            if callback_url is not None:
                callback_url = await self._check_callback_url(callback_url, checked)
            max_attempts = submission.max_attempts
            # By position, in NewScan's field order: a batch makes hundreds.
            into.append(
                make_new_scan(
                    new_scan_id(), now, target, scanner, options, submission.priority,
                    default_attempts if max_attempts is None else max_attempts, None, idempotency_key, tenant, actor,
                    plugin.politeness_key(target=target), callback_url,
                )
            )  # fmt: skip

    async def _check_callback_url(self, url: str, checked: dict[str, str]) -> str:
        if self._callbacks is None:
            raise ValidationError("callback_url is not accepted by this service")
        if url not in checked:
            checked[url] = await self._callbacks.check_callback_url(url)
        return checked[url]


__all__ = ["Preparer"]
