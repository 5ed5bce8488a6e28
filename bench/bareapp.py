"""The ingest scenario's baseline: a bare ASGI app that reads the request and answers a new UUIDv7.

No framework, no validation, no store: what one uvicorn process (uvloop +
httptools) can answer on this machine. ``scanq ingest`` runs on the same
server stack, so ``scanq / bare`` is the cost of scanq itself (routing,
validation, the durable commit), independent of how fast this box is today.

Run: ``python -m uvicorn bench.bareapp:app --loop uvloop --http httptools --no-access-log``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uuid_utils

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    """Answer every HTTP request with ``200 text/plain`` and a fresh UUIDv7 (the body is read and ignored)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    body = str(uuid_utils.uuid7()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
