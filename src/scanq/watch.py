"""Redraw a command's output in place every few seconds (``scanq stats --watch``), like ``watch(1)``.

On a terminal each frame clears the screen first, so the figures refresh in
place; when the output is a pipe or a file, frames are appended one after
the other under a timestamped header instead (escape codes would only be
noise there). A failed refresh prints its error and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TextIO

import click

DEFAULT_WATCH_S = 2.0
# Cursor home, then erase the screen: the frame is redrawn where the last one was.
CLEAR_SCREEN = "\x1b[H\x1b[2J"


async def watch(
    render: Callable[[], Awaitable[None]],
    *,
    interval_s: float,
    title: str,
    out: TextIO | None = None,
    handle_signals: bool = True,
) -> None:
    """Call ``render`` every ``interval_s``, each frame under a header, until SIGINT/SIGTERM (then return).

    Args:
        render: prints one frame (e.g. ``client.stats``); a ``click.ClickException`` is shown and retried.
        interval_s: seconds between the starts of two frames.
        title: what is watched, shown in the header.
        out: where headers go (default stdout); a terminal gets in-place redraws.
        handle_signals: stop on SIGINT/SIGTERM (Ctrl-C) at once, even mid-request; tests cancel instead.
    """
    stream = out if out is not None else sys.stdout
    is_terminal = stream.isatty()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        while not stop.is_set():
            started = loop.time()
            if is_terminal:
                stream.write(CLEAR_SCREEN)
            header = f"{title}   every {interval_s:g}s   {datetime.now().strftime('%H:%M:%S')}   (Ctrl-C stops)"
            click.echo(header, file=stream)
            if not await _render_unless_stopped(render, stop, stream):
                return
            if not is_terminal:
                click.echo("", file=stream)
            stream.flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, interval_s - (loop.time() - started)))
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _render_unless_stopped(render: Callable[[], Awaitable[None]], stop: asyncio.Event, stream: TextIO) -> bool:
    """Run one frame; False (frame abandoned) if ``stop`` is set first."""
    frame = asyncio.ensure_future(render())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([frame, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not frame.done():
            frame.cancel()
            await asyncio.gather(frame, return_exceptions=True)
    if frame.cancelled():
        return False
    exc = frame.exception()
    if isinstance(exc, click.ClickException):
        click.echo(f"error: {exc.format_message()}", file=stream)
    elif exc is not None:
        raise exc
    return True


__all__ = ["DEFAULT_WATCH_S", "watch"]
