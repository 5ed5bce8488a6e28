"""The parts a settings section is declared with, ``Settings`` and each plugin's alike.

``setting`` makes a field (default, help, key, original names), ``SettingSpec``
is one setting as a user sees it (flag, variable), and ``PluginSettings``
holds the plugins' sections inside ``Settings``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from scanq.exceptions import ConfigError

ENV_PREFIX = "SCANQ_"

SectionT = TypeVar("SectionT")


def setting(default: Any, help: str, *, key: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    """A field of a settings dataclass (``Settings`` or a plugin's section).

    Args:
        default: the value when nothing sets it (every setting has one).
        help: one line for ``--help`` and the README.
        key: the flag/variable name when it is not ``<namespace>_<field>`` (kept names such as ``target_allowlist``).
        aliases: other variables that set it, weaker than ``SCANQ_*`` (the original system's ``MIN_SLEEP``).
    """
    return field(default=default, metadata={"help": help, "key": key, "aliases": aliases})


def setting_error(name: str, why: str, value: Any) -> ConfigError:
    """The error a settings dataclass raises for a bad field ``name`` (readers name the variable or flag instead)."""
    return ConfigError(f"{name}: {why} (got {value!r})", setting=name)


@dataclass(frozen=True, kw_only=True, slots=True)
class SettingSpec:
    """One setting as a user sees it: the field of a section, with its flag, variable, default and help."""

    key: str
    field: str
    section: type[Any]
    annotation: Any
    default: Any
    help: str
    aliases: tuple[str, ...]

    @property
    def env(self) -> str:
        """``SCANQ_MOCK_MIN_SLEEP``."""
        return ENV_PREFIX + self.key.upper()

    @property
    def flag(self) -> str:
        """``--mock-min-sleep``."""
        return "--" + self.key.replace("_", "-")


class PluginSettings:
    """The settings sections of the scanner plugins, one instance per section class.

    A section not given holds its defaults, so ``PluginSettings()`` is every
    plugin with its defaults and two containers are equal when every section is.

    Args:
        sections: instances of section dataclasses, at most one per class.
    """

    __slots__ = ("_sections",)

    def __init__(self, *sections: Any) -> None:
        classes = [type(section) for section in sections]
        if len(set(classes)) != len(classes) or not all(dataclasses.is_dataclass(cls) for cls in classes):
            raise TypeError(f"not one settings section per class: {sections!r}")
        self._sections = {cls: section for cls, section in zip(classes, sections, strict=True) if section != cls()}

    def __getitem__(self, cls: type[SectionT]) -> SectionT:
        section = self._sections.get(cls)
        return section if section is not None else cls()

    def __iter__(self) -> Iterator[Any]:
        """The sections that differ from their defaults."""
        return iter(self._sections.values())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PluginSettings) and self._sections == other._sections

    def __hash__(self) -> int:
        return hash(frozenset(self._sections.values()))

    def __repr__(self) -> str:
        return f"PluginSettings({', '.join(map(repr, self))})"


__all__ = ["ENV_PREFIX", "PluginSettings", "SettingSpec", "setting", "setting_error"]
