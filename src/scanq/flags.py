"""Settings as click flags: one flag per setting, read with the same rules as the environment.

Each setting is a flag named after its key (``lease_seconds`` ↔
``--lease-seconds``, the mock plugin's ``min_sleep`` ↔ ``--mock-min-sleep``)
that falls back to its ``SCANQ_*`` variable (click shows it in ``--help``).
Flags given on the command line are parsed with the same rules as the
environment (``config.parse_value``), then ``Settings.from_env(os.environ,
**flags)`` builds the settings, so flags win over ``SCANQ_*``, which win over
the original names (``INGEST_PORT`` …). The plugins' flags are built when a
command that runs scanners parses its arguments, so the client commands
import no plugin. ``cli.py`` declares the commands with ``with_settings``.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click
from click.core import ParameterSource
from click.decorators import FC

from scanq.config import (
    Settings,
    SettingSpec,
    format_value,
    parse_value,
    section_specs,
    setting_specs,
    unknown_env_names,
)
from scanq.logs import configure_logging

_T = TypeVar("_T")

logger = logging.getLogger(__name__)

CORE_SPECS = {spec.key: spec for spec in section_specs(Settings)}
_METAVARS = {int: "INTEGER", float: "FLOAT", str: "TEXT"}
# Set on a command's callback by ``with_settings(..., plugins=True)``: add every plugin setting as a flag.
_PLUGIN_FLAGS = "__scanq_plugin_flags__"


class SettingsCommand(click.Command):
    """A command that adds the plugins' setting flags (after ``--default-scanner``) the first time it parses."""

    _has_plugin_flags = False

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        if getattr(self.callback, _PLUGIN_FLAGS, False) and not self._has_plugin_flags:
            at = next((i + 1 for i, p in enumerate(self.params) if p.name == "default_scanner"), len(self.params))
            self.params[at:at] = [click.Option(decls, **attrs) for decls, attrs in map(_option_args, _plugin_specs())]
            self._has_plugin_flags = True
        return super().get_params(ctx)


def flag_name(name: str) -> str:
    """``lease_seconds`` → ``--lease-seconds``."""
    return "--" + name.replace("_", "-")


def _plugin_specs() -> tuple[SettingSpec, ...]:
    return tuple(spec for spec in setting_specs() if spec.section is not Settings)


def _plugin_keys() -> set[str]:
    return {spec.key for spec in _plugin_specs()}


def _spec(key: str) -> SettingSpec:
    spec = CORE_SPECS.get(key)
    return spec if spec is not None else next(s for s in _plugin_specs() if s.key == key)


def _option_args(spec: SettingSpec) -> tuple[list[str], dict[str, Any]]:
    if (spec.annotation is bool or spec.annotation == "bool") and spec.default is True:
        # On by default: the flag pair turns it off (--no-webhooks) or on again; the variable takes 1/0, true/false.
        return [f"{spec.flag}/--no-{spec.flag.removeprefix('--')}", spec.key], {
            "default": None,
            "envvar": spec.env,
            "show_envvar": True,
            "help": spec.help,
        }
    if spec.annotation is bool or spec.annotation == "bool":
        # A switch: given on the command line it reads as "true" (the variable still takes 1/0, true/false).
        return [spec.flag, spec.key], {
            "is_flag": True,
            "flag_value": "true",
            "default": None,
            "envvar": spec.env,
            "show_envvar": True,
            "help": spec.help,
        }
    metavar = "SECONDS" if spec.key.endswith("_seconds") else _METAVARS.get(spec.annotation, "LIST")
    # The default is only shown: build_settings reads values given on the command line, nothing else.
    return [spec.flag, spec.key], {
        "default": format_value(spec.default),
        "show_default": True,
        "metavar": metavar,
        "envvar": spec.env,
        "show_envvar": True,
        "help": spec.help,
    }


def settings_option(name: str) -> Callable[[FC], FC]:
    """The click option for one setting: raw string, env fallback shown in --help, default from the field."""
    decls, attrs = _option_args(_spec(name))
    return click.option(*decls, **attrs)


def build_settings(ctx: click.Context, raw: dict[str, str | bool | None], *, read_plugins: bool = True) -> Settings:
    """Settings from the environment, overridden by the flags given on the command line.

    Values click took from ``SCANQ_*`` are ignored here: ``Settings.from_env``
    reads those itself, after the original names, so the precedence is the same with or without click.
    """
    overrides: dict[str, Any] = {}
    for name, value in raw.items():
        if value is not None and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE:
            spec = _spec(name)
            text = value if isinstance(value, str) else format_value(value)  # a --x/--no-x pair gives a bool
            overrides[name] = parse_value(name, spec.annotation, text, source=spec.flag)
    return Settings.from_env(os.environ, read_plugins=read_plugins, **overrides)


def with_settings(names: Iterable[str], *, plugins: bool = False) -> Callable[[Callable[..., _T]], Callable[..., _T]]:
    """Add a flag for each named setting; the command receives ``settings`` (logging already configured).

    Args:
        names: setting keys, core or plugin (``mock_min_sleep``).
        plugins: also every plugin setting, for the commands that run scanners (needs ``SettingsCommand``,
            the group's command class); the plugins are imported only when the command parses.
    """
    names = tuple(names)
    read_plugins = plugins or not set(names) <= CORE_SPECS.keys()

    def decorate(command: Callable[..., _T]) -> Callable[..., _T]:
        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> _T:
            keys = (*names, *(_plugin_keys() if plugins else ()))
            raw = {name: kwargs.pop(name) for name in keys if name in kwargs}
            settings = build_settings(click.get_current_context(), raw, read_plugins=read_plugins)
            configure_logging(settings)
            for unknown in unknown_env_names(os.environ):
                logger.warning("%s is not a scanq setting and is ignored (see scanq --help)", unknown)
            return command(settings, **kwargs)

        setattr(wrapper, _PLUGIN_FLAGS, plugins)
        for name in reversed(names):
            wrapper = settings_option(name)(wrapper)
        return wrapper

    return decorate


__all__ = ["CORE_SPECS", "SettingsCommand", "build_settings", "flag_name", "settings_option", "with_settings"]
