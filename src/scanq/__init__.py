"""scanq: a durable job queue for cyber scans with an HTTP submit/status API."""

__version__ = "0.1.0"
