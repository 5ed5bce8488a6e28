"""scanq's own options in a store URL's query string, taken out and typed before the driver sees the URL.

``postgresql://host/db?min_pool=1&max_pool=4&sslmode=require`` gives
``{"min_pool": "1", "max_pool": "4"}`` to scanq and the rest to asyncpg; each
backend declares its options as a frozen dataclass and ``parse_options`` fills
it, so a bad value is a ``ConfigError`` naming the option at start-up.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Collection, Mapping
from typing import Any, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from scanq.exceptions import ConfigError

SETTING = "SCANQ_DATABASE_URL"

OptionsT = TypeVar("OptionsT")


def split_options(url: str, names: Collection[str]) -> tuple[str, dict[str, str]]:
    """Take the query parameters named in ``names`` (any case) out of ``url``; return the rest of the URL and them."""
    wanted = {name.lower() for name in names}
    parts = urlsplit(url)
    ours: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key.lower() in wanted:
            ours[key.lower()] = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), ours


def option_names(options_type: type[Any]) -> tuple[str, ...]:
    """The URL option names of an options dataclass (its field names)."""
    return tuple(field.name for field in dataclasses.fields(options_type))


def parse_options(options_type: type[OptionsT], values: Mapping[str, str], **overrides: Any) -> OptionsT:
    """Build ``options_type`` from URL strings, with keyword ``overrides`` (already typed) taking precedence.

    Fields may be ``int``, ``float``, ``str`` or ``bool`` (or ``X | None``); ints
    and floats must not be negative. Raise ``ConfigError`` naming the option.
    """
    hints = get_type_hints(options_type)
    known = set(option_names(options_type))
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"{options_type.__name__} has no option {sorted(unknown)[0]!r}")
    kwargs: dict[str, Any] = {}
    for name, raw in values.items():
        if name in known and name not in overrides:
            kwargs[name] = _convert(name, raw, hints[name])
    kwargs.update(overrides)
    return options_type(**kwargs)


def _convert(name: str, raw: str, hint: Any) -> Any:
    kind = _base_type(hint)
    if kind is str:
        return raw
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{SETTING}: {name} must be true or false, not {raw!r}", setting=SETTING)
    try:
        value = kind(raw)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        raise ConfigError(f"{SETTING}: {name} must be {noun}, not {raw!r}", setting=SETTING) from None
    if value < 0:
        raise ConfigError(f"{SETTING}: {name} must not be negative", setting=SETTING)
    return value


def _base_type(hint: Any) -> Any:
    if get_origin(hint) in (types.UnionType,) or str(get_origin(hint)) == "typing.Union":
        args = [arg for arg in get_args(hint) if arg is not type(None)]
        return args[0]
    return hint


__all__ = ["option_names", "parse_options", "split_options"]
