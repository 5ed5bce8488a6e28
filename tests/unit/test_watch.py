"""``scanq stats --watch``: frames redrawn in place on a terminal, appended elsewhere, errors retried."""

from __future__ import annotations

import asyncio
import io

import click
import pytest

from scanq.watch import CLEAR_SCREEN, watch


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def run_frames(out: io.StringIO, frames: int, *, fail_on: int | None = None) -> None:
    rendered = 0
    done = asyncio.Event()

    async def render() -> None:
        nonlocal rendered
        rendered += 1
        if rendered == frames:
            done.set()
        if rendered == fail_on:
            raise click.ClickException("status service unreachable")
        out.write(f"frame {rendered}\n")

    task = asyncio.create_task(watch(render, interval_s=0.01, title="scanq stats", out=out, handle_signals=False))
    await asyncio.wait_for(done.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_terminal_gets_each_frame_redrawn_in_place() -> None:
    out = Terminal()
    await run_frames(out, 3)
    frames = out.getvalue().split(CLEAR_SCREEN)
    assert frames[0] == ""
    assert len(frames) == 4
    assert frames[1].startswith("scanq stats   every 0.01s")
    assert "frame 1" in frames[1] and "frame 2" in frames[2]


async def test_a_pipe_gets_frames_one_after_another_and_errors_do_not_stop_it() -> None:
    out = io.StringIO()
    await run_frames(out, 3, fail_on=2)
    text = out.getvalue()
    assert CLEAR_SCREEN not in text
    assert text.count("scanq stats   every") == 3
    assert "error: status service unreachable" in text
    assert "frame 1" in text and "frame 3" in text
