"""The HTTP services: ingest (:10550), status (:10551), or both in one process.

``cli.py`` serves these with uvicorn (uvloop + httptools).
"""

from __future__ import annotations

from scanq.api.app import create_api_app, create_ingest_app, create_status_app

__all__ = ["create_api_app", "create_ingest_app", "create_status_app"]
