"""Logging setup from one ``dictConfig`` dict: readable text (default) or one JSON object per line.

Only ``cli.py`` calls ``configure_logging``; every other module just does
``logger = logging.getLogger(__name__)`` and passes structured fields with
``extra={"scan_id": ..., "worker": ..., "attempt": ...}``. The JSON format
keeps those fields as keys; the text format shows the message only.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from scanq.config import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys() | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the ``extra`` fields, and ``exc_info`` if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(*, level: str, log_format: str) -> dict[str, Any]:
    """The ``dictConfig`` dict: one stderr handler with the chosen formatter on the root logger.

    Args:
        level: a logging level name (DEBUG … CRITICAL).
        log_format: ``text`` or ``json``.
    """
    return {
        "version": 1,
        # uvicorn and libraries create loggers at import time; keep them working.
        "disable_existing_loggers": False,
        "formatters": {
            "text": {"format": TEXT_FORMAT},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": log_format},
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            # uvicorn's own loggers would otherwise add their handlers next to ours.
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
            # httpx logs every request at INFO; the CLI client would drown its own output.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
        },
    }


def configure_logging(settings: Settings) -> None:
    """Apply ``settings.log_level`` and ``settings.log_format`` to the whole process."""
    logging.config.dictConfig(log_config(level=settings.log_level, log_format=settings.log_format))
