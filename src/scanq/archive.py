"""Finished scans as NDJSON: ``scanq export``, and the archive retention writes before it deletes.

One line per scan: the stored record as JSON (``scanq.models.Scan``'s fields,
history and result included, times in RFC 3339 UTC).

- ``export_ndjson`` pages through ``Store.export_scans`` in key order and writes
  each page as it comes: constant memory however many scans there are. The
  cursor is the ``scan_id`` of the last line written, so an interrupted export
  resumes with ``--cursor`` set to it.
- ``ArchiveWriter`` appends each batch retention is about to delete to a
  gzip-compressed NDJSON file (one gzip member per batch, so every batch is a
  complete unit) and returns only once the file is fsynced; a new file is
  started past ``ARCHIVE_FILE_BYTES`` or ``ARCHIVE_FILE_S``, and by every new
  writer (a process never appends to a file it did not start). The archive is
  at-least-once: a pruner that stops between writing a batch and deleting it
  leaves that batch to the next pass, which writes it again. Read it back
  with ``read_archive`` (or ``zcat``), keyed by ``scan_id``.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import msgspec

from scanq.config import Settings
from scanq.exceptions import ValidationError
from scanq.models import Scan, ScanStatus
from scanq.store import Store, open_store

logger = logging.getLogger(__name__)

EXPORT_PAGE = 1000
ARCHIVE_FILE_BYTES = 64 * 1024 * 1024
ARCHIVE_FILE_S = 3600.0
ARCHIVE_SUFFIX = ".ndjson.gz"
COMPRESS_LEVEL = 6
# Characters of an owner id kept in a file name (worker ids are ``host:pid:random``).
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")

_encoder = msgspec.json.Encoder()


def encode_lines(scans: Sequence[Scan]) -> bytes:
    """``scans`` as NDJSON: one JSON object and a newline each."""
    buffer = bytearray()
    for scan in scans:
        _encoder.encode_into(scan, buffer, len(buffer))
        buffer += b"\n"
    return bytes(buffer)


@dataclass(frozen=True, kw_only=True, slots=True)
class Exported:
    """What an export wrote: how many scans, and the cursor to resume after the last (None: nothing written)."""

    count: int
    cursor: str | None


async def export_ndjson(
    store: Store,
    out: IO[bytes],
    *,
    status: ScanStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    tenant: str | None = None,
    page: int = EXPORT_PAGE,
) -> Exported:
    """Write every finished scan that matches to ``out`` as NDJSON, in key order, one page at a time.

    Args:
        store: an open store.
        out: a binary stream; flushed after every page.
        status: one terminal status (None: all three).
        since: finished at or after this moment.
        until: finished before this moment.
        after: resume after this scan id (the cursor of an earlier export).
        tenant: only that tenant's scans (None: every tenant's).
        page: scans read per store call.
    """
    count, cursor = 0, after
    while True:
        scans = await store.export_scans(
            status=status, since=since, until=until, after=cursor, limit=page, tenant=tenant
        )
        if not scans:
            return Exported(count=count, cursor=cursor)
        out.write(encode_lines(scans))
        out.flush()
        count += len(scans)
        cursor = scans[-1].scan_id


async def export_to(
    settings: Settings,
    out: IO[bytes],
    *,
    status: ScanStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after: str | None = None,
    tenant: str | None = None,
) -> Exported:
    """``scanq export``: open the store of ``settings`` and ``export_ndjson`` to ``out``."""
    async with open_store(settings.database_url) as store:
        return await export_ndjson(store, out, status=status, since=since, until=until, after=after, tenant=tenant)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time (``2025-01-31``, ``2025-01-31T12:00:00+02:00``, ``…Z``), UTC unless it says otherwise."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValidationError(f"{text!r} is not an ISO 8601 time such as 2025-01-31T12:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class ArchiveWriter:
    """Appends batches of scans to rotating gzip NDJSON files in ``directory``; every ``write`` is durable on return.

    Blocking file I/O: the worker calls ``write`` in a thread.

    Args:
        directory: created if missing.
        owner: names the files this writer starts (``scans-<UTC time>-<owner>.ndjson.gz``).
        max_bytes: start a new file once the current one is this large.
        max_age_s: start a new file once the current one is this old.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        owner: str,
        max_bytes: int = ARCHIVE_FILE_BYTES,
        max_age_s: float = ARCHIVE_FILE_S,
    ) -> None:
        self.directory = Path(directory)
        self.owner = _UNSAFE_NAME.sub("-", owner).strip("-") or "scanq"
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.path: Path | None = None
        self._started = 0.0
        self._serial = 0

    def write(self, scans: Sequence[Scan]) -> Path:
        """Append ``scans`` as one gzip member and fsync; return the file written. Nothing is written for none."""
        path = self._current()
        if not scans:
            return path
        member = gzip.compress(encode_lines(scans), compresslevel=COMPRESS_LEVEL, mtime=0)
        with path.open("ab") as file:
            size = file.tell()
            try:
                file.write(member)
                file.flush()
                os.fsync(file.fileno())
            except BaseException:
                # Leave only whole batches behind (what could not be written is deleted by nobody).
                file.truncate(size)
                raise
        return path

    def _current(self) -> Path:
        """The file to append to: the current one, or a new one (durable in its directory) when it is due."""
        now = time.monotonic()
        path = self.path
        is_fresh = now - self._started < self.max_age_s
        if path is not None and is_fresh and path.exists() and path.stat().st_size < self.max_bytes:
            return path
        self.directory.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        path = self.directory / f"scans-{stamp}-{self.owner}-{self._serial}{ARCHIVE_SUFFIX}"
        with path.open("xb") as file:
            os.fsync(file.fileno())
        _fsync_directory(self.directory)
        self.path, self._started = path, now
        logger.info("retention archive: writing %s", path, extra={"archive": str(path)})
        return path


def read_archive(source: str | os.PathLike[str]) -> Iterator[dict[str, Any]]:
    """Every scan in an archive file, or in every ``*.ndjson.gz`` of a directory (oldest file first), as a dict.

    A batch cut short by a crash (the file's last gzip member, never deleted from the store) is skipped.
    """
    path = Path(source)
    files = sorted(path.glob(f"*{ARCHIVE_SUFFIX}")) if path.is_dir() else [path]
    for file in files:
        data = file.read_bytes()
        while data:
            inflater = zlib.decompressobj(wbits=31)  # one gzip member
            try:
                text = inflater.decompress(data) + inflater.flush()
            except zlib.error:
                break
            if not inflater.eof:
                break
            for line in text.splitlines():
                yield msgspec.json.decode(line)
            data = inflater.unused_data


def _fsync_directory(directory: Path) -> None:
    """Make a new file's directory entry durable (a crash could otherwise lose the file, fsynced or not)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = [
    "ARCHIVE_FILE_BYTES",
    "ARCHIVE_FILE_S",
    "ARCHIVE_SUFFIX",
    "EXPORT_PAGE",
    "ArchiveWriter",
    "Exported",
    "encode_lines",
    "export_ndjson",
    "export_to",
    "parse_time",
    "read_archive",
]
