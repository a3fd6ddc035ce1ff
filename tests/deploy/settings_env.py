"""Which environment variables the settings object reads: the check that every variable the
deployment files give our own containers is a real setting.

The names are derived from :class:`recsys_stream.settings.Settings` itself, not listed by hand:
its ``env_prefix`` and ``env_nested_delimiter``, its sections (pydantic models and dataclasses,
nested to any depth) and top-level fields, and the fields whose ``validation_alias`` names a
conventional variable (``KAFKA_BOOTSTRAP_SERVERS``, ``REDIS_URL``, ``RECSYS_DATA_DIR``).
pydantic-settings ignores unknown ``RECSYS_*`` variables (``extra="ignore"``), so a misspelt one
would silently do nothing: hence this check.

>>> names = settings_env_names()
>>> "RECSYS_KAFKA__TOPIC" in names and "KAFKA_BOOTSTRAP_SERVERS" in names
True
>>> unknown_settings(["RECSYS_KAFKA__TOPIC", "RECSYS_KAFKA__TOPICS"])
['RECSYS_KAFKA__TOPICS']
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic_settings import BaseSettings

from recsys_stream.settings import Settings


def _sections(annotation: Any) -> list[type]:
    """The pydantic models and dataclasses an annotation can hold (``X | None`` included)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        return [s for arg in typing.get_args(annotation) for s in _sections(arg)]
    if isinstance(annotation, type) and (
        issubclass(annotation, BaseModel) or dataclasses.is_dataclass(annotation)
    ):
        return [annotation]
    return []


def _fields(section: type) -> list[tuple[str, Any, list[str]]]:
    """(name, annotation, alias names) of each field of a pydantic model or a dataclass."""
    if issubclass(section, BaseModel):
        out = []
        for name, info in section.model_fields.items():
            aliases: list[str] = []
            alias = info.validation_alias
            if isinstance(alias, str):
                aliases = [alias]
            elif isinstance(alias, AliasChoices):
                # An AliasPath choice addresses a key inside a value, not a variable: skipped.
                aliases = [choice for choice in alias.choices if isinstance(choice, str)]
            out.append((name, info.annotation, aliases))
        return out
    if not dataclasses.is_dataclass(section):
        raise TypeError(f"{section.__name__} is neither a pydantic model nor a dataclass")
    hints = typing.get_type_hints(section)
    return [(f.name, hints[f.name], []) for f in dataclasses.fields(section)]


def _walk(section: type, prefix: str, delimiter: str, names: set[str]) -> None:
    for name, annotation, _aliases in _fields(section):
        path = f"{prefix}{name.upper()}"
        names.add(path)  # a section may also be given whole, as JSON
        for nested in _sections(annotation):
            _walk(nested, path + delimiter, delimiter, names)


@functools.cache
def settings_env_names(settings_class: type[BaseSettings] = Settings) -> frozenset[str]:
    """Every environment variable name that ``settings_class`` reads (upper case)."""
    config = settings_class.model_config
    prefix = str(config.get("env_prefix", "")).upper()
    delimiter = config.get("env_nested_delimiter") or ""
    if not delimiter:
        raise ValueError(f"{settings_class.__name__} has no env_nested_delimiter")
    names: set[str] = set()
    for name, annotation, aliases in _fields(settings_class):
        if aliases:
            # A field with a validation alias is read from the alias alone, without the prefix.
            names.update(alias.upper() for alias in aliases)
            continue
        path = f"{prefix}{name.upper()}"
        names.add(path)
        for section in _sections(annotation):
            _walk(section, path + delimiter, delimiter, names)
    return frozenset(names)


def unknown_settings(names: Iterable[str]) -> list[str]:
    """The names (sorted) that are not a setting, compared the way pydantic-settings compares
    them (case-insensitively unless ``case_sensitive`` is on)."""
    known = settings_env_names()
    if Settings.model_config.get("case_sensitive", False):
        return sorted({name for name in names if name not in known})
    return sorted({name for name in names if name.upper() not in known})
