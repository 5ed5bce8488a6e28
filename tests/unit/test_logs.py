"""Logging setup: readable text by default, one JSON object per line with the structured fields on request."""

from __future__ import annotations

import json
import logging

import pytest

from scanq.config import Settings
from scanq.logs import configure_logging


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_time_level_logger_message_and_extra_fields(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_format="json", log_level="DEBUG"))
    logging.getLogger("scanq.worker").info("scan %s complete", "abc", extra={"scan_id": "abc", "attempt": 2})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("scanq.worker").error("crashed", exc_info=True)

    first, second = (json.loads(line) for line in capsys.readouterr().err.splitlines())
    assert first["level"] == "INFO"
    assert first["logger"] == "scanq.worker"
    assert first["message"] == "scan abc complete"
    assert (first["scan_id"], first["attempt"]) == ("abc", 2)
    assert first["time"].endswith("+00:00")
    assert "ValueError: boom" in second["exc_info"]


def test_text_is_the_default_and_the_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_level="WARNING"))
    logging.getLogger("scanq.x").info("hidden")
    logging.getLogger("scanq.x").warning("shown %d", 1)

    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "WARNING scanq.x: shown 1" in err
