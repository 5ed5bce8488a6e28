"""The worker: claims scans in batches, runs them concurrently through scanner plugins, records outcomes.

One asyncio task per running scan, plus six long-lived tasks next to the claim loop (eight with webhooks):

- claim loop (``loop.Worker.run``): claims as many scans as there are free
  slots, in one call; when the queue is empty it sleeps in
  ``store.wait_for_work`` (woken by the store, never a fixed one-second poll);
- heartbeat (``leases``): renews every held lease in one call, and stops scans
  whose lease was lost (dropped: another attempt owns the scan now) or whose
  cancel was requested (finished as Cancelled);
- reaper (``leases``): ``store.requeue_expired``, safe on every worker at once;
- timeouts (``leases``): one sweep cancels scans running past ``scan_timeout_seconds``;
- flusher (``flush``): outcomes of finished scans are written in one
  ``store.finish`` call; a flush starts as soon as the flusher is idle and
  outcomes arriving during a flush are coalesced into the next one;
- summary (``flush``): one INFO line every ``SUMMARY_INTERVAL_S`` with what finished.
- retention (``retention``): deletes finished scans past their ``--retention`` age,
  scan events past ``--event-retention-seconds`` and ended webhook deliveries past
  ``--delivery-retention-seconds`` in short batches; one worker at a time holds
  the store's retention role.
- webhooks (``scanq.webhooks``): the dispatcher (one worker at a time holds the
  webhook role; it runs with ``--no-webhooks`` too, so the event log can be
  pruned) and, unless ``--no-webhooks``, the delivery loop, which claims, sends
  and records webhook deliveries.

What a failed or timed-out attempt becomes is ``scanq.lifecycle``'s rule;
every store call rides out outages the same way (``retry``). ``boot`` is the
process around it: signals, the metrics server, ``--check``. Every module logs
as ``scanq.worker``. Shutdown is described in ``loop``.
"""

from scanq.worker.boot import check_store, run_worker
from scanq.worker.loop import Worker, make_worker_id

__all__ = ["Worker", "check_store", "make_worker_id", "run_worker"]
