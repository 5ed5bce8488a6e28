"""The ingest benchmark's wrk judge: its Lua script, and the report when wrk cannot be had."""

from __future__ import annotations

import json
from pathlib import Path

from bench.ingest import _wrk_report
from bench.wrk import post_script


def test_the_script_posts_the_body_as_json_and_reports_in_json(tmp_path: Path) -> None:
    body = json.dumps({"target": "example.com", "scanner": "noop"}).encode()

    script = post_script(body=body, workdir=tmp_path).read_text()

    assert 'wrk.method = "POST"' in script
    assert f"wrk.body = [[{body.decode()}]]" in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert "WRK_JSON" in script and "latency:percentile(99)" in script


def test_without_wrk_the_table_says_so_instead_of_failing() -> None:
    report = _wrk_report(None, None, None, wrk=None, is_quick=False)

    assert report["available"] is False
    assert report["table"] == [["wrk -t1 -c64", "wrk unavailable: not installed and no root or apt"]]
