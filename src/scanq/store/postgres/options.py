"""PostgresStore's own options: query parameters of the URL, typed; every other parameter is asyncpg's."""

from __future__ import annotations

from dataclasses import dataclass

from scanq.store.url_options import option_names, parse_options, split_options

DEFAULT_MIN_POOL = 2
DEFAULT_MAX_POOL = 10
DEFAULT_POLL_INTERVAL_S = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class PostgresOptions:
    """Options of ``postgresql://…?min_pool=1&max_pool=4&poll_interval_s=2``.

    Args:
        min_pool: connections kept open.
        max_pool: most connections this process opens (plus one for ``LISTEN`` in workers).
        poll_interval_s: longest ``wait_for_work`` sleeps without a notification (the fallback poll).
    """

    min_pool: int = DEFAULT_MIN_POOL
    max_pool: int = DEFAULT_MAX_POOL
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S

    @property
    def pool_sizes(self) -> tuple[int, int]:
        """``(min_size, max_size)`` for the pool: at least one connection, and min never above max."""
        max_size = max(1, self.max_pool)
        return min(self.min_pool, max_size), max_size


def parse_url(
    url: str, *, min_pool: int | None = None, max_pool: int | None = None, poll_interval_s: float | None = None
) -> tuple[str, PostgresOptions]:
    """Split ``url`` into asyncpg's DSN and scanq's options; a keyword given here wins over the URL.

    Raise ``ConfigError`` naming ``SCANQ_DATABASE_URL`` on a bad value.
    """
    dsn, values = split_options(url, option_names(PostgresOptions))
    given = {"min_pool": min_pool, "max_pool": max_pool, "poll_interval_s": poll_interval_s}
    overrides = {name: value for name, value in given.items() if value is not None}
    return dsn, parse_options(PostgresOptions, values, **overrides)


__all__ = ["DEFAULT_MAX_POOL", "DEFAULT_MIN_POOL", "DEFAULT_POLL_INTERVAL_S", "PostgresOptions", "parse_url"]
