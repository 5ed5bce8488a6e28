"""Webhooks: scan events POSTed to tenants' endpoints, signed per Standard Webhooks, at least once.

The store keeps the outbox (``store/base.py`` rules 10 and 11): every status
transition writes a scan event in its own transaction, and
``dispatch_events`` turns events into pending deliveries, one per subscribed
endpoint. The worker processes do the rest, with the modules here:

- ``dispatcher``: one worker at a time (the webhook role) dispatches new
  events, woken by the store's own notifications;
- ``delivery``: every worker claims due deliveries under a lease, sends them
  concurrently (bounded in all and per endpoint, so a slow or dead endpoint
  never holds up the others) and records the results in batches (``recorder``);
- ``schedule``: 2xx delivered, 410 failed, anything else retried with
  exponential backoff and full jitter until ``--webhook-max-age-seconds``;
- ``payload``: the body, the scan as the status API shows it, size-bounded;
- ``signing``: ``whsec_`` secrets and the ``webhook-*`` headers;
- ``urls``: the SSRF rules of the network scanners, at registration
  (``check_endpoint_url``) and again at each delivery, pinned to the checked
  address (``pin_endpoint``);
- ``sender``: one POST over that pinned connection, no redirects, timeouts,
  a cap on what is read;
- ``runner``: the two loops of a worker process, from its settings.

The package sits below the entry points (the worker runs it, the API checks
URLs and makes secrets with it) and above the store and the network library.
"""
