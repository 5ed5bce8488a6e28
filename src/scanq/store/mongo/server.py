"""What the MongoDB server is: its topology (change streams and transactions) and its clock."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from pymongo import AsyncMongoClient

from scanq.store.mongo.rows import Document, as_utc

logger = logging.getLogger(__name__)

# The offset to the server clock is measured from ``hello.localTime`` (millisecond precision,
# plus half a round trip of error), so a smaller difference is noise: the local clock is used.
CLOCK_SKEW_IGNORED_S = 0.5


async def inspect_server(client: AsyncMongoClient[Document]) -> tuple[bool, timedelta]:
    """Whether the server has change streams and transactions (a replica set or mongos), and its clock's offset."""
    loop = asyncio.get_running_loop()
    sent = loop.time()
    hello = await client.admin.command("hello")
    round_trip_s = loop.time() - sent
    has_change_streams = "setName" in hello or hello.get("msg") == "isdbgrid"
    server_time = as_utc(hello.get("localTime"))
    if server_time is not None:
        offset = server_time - (datetime.now(UTC) - timedelta(seconds=round_trip_s / 2))
        if abs(offset.total_seconds()) > CLOCK_SKEW_IGNORED_S:
            logger.warning("MongoDB server clock differs by %.3fs: using the server's time", offset.total_seconds())
            return has_change_streams, offset
    return has_change_streams, timedelta(0)
