"""The benchmarks' wrk judge: its Lua scripts, and the report when wrk cannot be had."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.ingest import _wrk_report
from bench.wrk import get_script, post_script


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


def test_the_get_script_asks_for_each_path_in_turn(tmp_path: Path) -> None:
    paths = ["/0192a", "/scans?limit=50", "/scans?limit=50&cursor=eyJrIjoiMDE5MmEifQ"]

    script = get_script(paths=paths, workdir=tmp_path).read_text()

    assert script.index('"/0192a"') < script.index('"/scans?limit=50"') < script.index('cursor=eyJrIjoiMDE5MmEifQ"')
    assert "next_path = next_path % #paths + 1" in script
    assert 'return wrk.format("GET", paths[next_path])' in script
    assert "WRK_JSON" in script


@pytest.mark.parametrize("path", ['/a"b', "/a\\b", "/caf\u00e9", "/a\nb"])
def test_a_path_that_cannot_be_a_lua_string_is_refused(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="Lua string"):
        get_script(paths=[path], workdir=tmp_path)
