"""Describe the machine a run happened on (the figures mean little without it)."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path
from typing import Any

from bench.databases import backend_of


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def load_average() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


async def describe(db: str) -> dict[str, Any]:
    """nproc, CPU, RAM, Python, SQLite and (for a PostgreSQL run) the server's version, and the load now."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "memory_gib": memory_gib(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "kernel": platform.release(),
        "load_average_at_start": load_average(),
    }
    if backend_of(db) == "postgres":
        import asyncpg

        conn = await asyncpg.connect(db)
        try:
            info["postgresql"] = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
    return info
