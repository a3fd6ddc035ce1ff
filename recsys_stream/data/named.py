"""Datasets by name, as the CLI, the services and the settings spell them.

A name is a MovieLens variant (``ml-100k``, ``ml-1m``, ...: see :data:`VARIANTS`), a file of
one's own ratings, ``csv:PATH`` (:mod:`recsys_stream.data.ratings_file`), or a synthetic
stream, ``synthetic[:EVENTS|:PRESET][:key=value...]``: ``EVENTS`` takes ``k`` and ``M``
suffixes, ``PRESET`` is one of :data:`~recsys_stream.data.presets.PRESETS` (``ml-1m-like``,
``ml-latest-small-like``), and the keys are ``events``, ``users``, ``items`` and ``seed``.
Without a preset, users and items grow with the stream from MovieLens 100K's shape: about 106
ratings per user, and 1,682 items at 100k events growing with the square root of the stream's
length.

>>> SyntheticSpec.parse("synthetic:1M:items=60000:seed=3")
SyntheticSpec(events=1000000, users=9430, items=60000, seed=3)
>>> SyntheticSpec.parse("synthetic")
SyntheticSpec(events=100000, users=943, items=1682, seed=0)
>>> spec = SyntheticSpec.parse("synthetic:ml-1m-like:seed=2")
>>> spec.events, spec.users, spec.items, spec.seed, spec.config.onboarding_events
(1000209, 6040, 3706, 2, 20)
>>> SyntheticSpec.parse("ml-100k") is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from recsys_stream.data._download import DatasetError
from recsys_stream.data.movielens import Dataset, load_dataset
from recsys_stream.data.presets import PRESETS
from recsys_stream.data.ratings_file import RATINGS_FILE_PREFIX, load_ratings_file
from recsys_stream.data.synthetic import SyntheticConfig, generate_synthetic
from recsys_stream.settings import Settings

__all__ = ["SyntheticSpec", "load_dataset_from_settings"]

SYNTHETIC_PREFIX: Final = "synthetic"
_DEFAULT_EVENTS: Final = 100_000
_EVENTS_PER_USER: Final = 100_000 / 943
_ITEMS_PER_100K: Final = 1_682
_SUFFIXES: Final = {"k": 1_000, "m": 1_000_000}


@dataclass(frozen=True)
class SyntheticSpec:
    """The arguments of :func:`generate_synthetic` that a ``synthetic:...`` name gives."""

    events: int
    users: int
    items: int
    seed: int = 0
    config: SyntheticConfig = field(default=SyntheticConfig(), repr=False)

    @classmethod
    def parse(cls, name: str) -> SyntheticSpec | None:
        """The spec a synthetic name stands for; None for any other name.

        Raises :class:`DatasetError` for a synthetic name that cannot be read.
        """
        head, *parts = name.split(":")
        if head != SYNTHETIC_PREFIX:
            return None
        preset = PRESETS.get(parts[0]) if parts else None
        events = preset.events if preset else _DEFAULT_EVENTS
        if parts and "=" not in parts[0]:
            first = parts.pop(0)
            if preset is None:
                events = _count(first, name)
        options: dict[str, int] = {}
        for part in parts:
            key, sep, value = part.partition("=")
            if not sep or key not in ("events", "users", "items", "seed"):
                raise DatasetError(
                    f"cannot read {name!r}: expected synthetic[:EVENTS|:PRESET][:events=N]"
                    f"[:users=N][:items=N][:seed=N], got {part!r}"
                    f" (presets: {', '.join(sorted(PRESETS))})"
                )
            options[key] = _count(value, name)
        events = options.get("events", events)
        if events < 1 or options.get("users", 1) < 1 or options.get("items", 1) < 1:
            raise DatasetError(f"cannot read {name!r}: events, users and items must be positive")
        scale = math.sqrt(events / _DEFAULT_EVENTS)
        users = preset.users if preset else max(1, round(events / _EVENTS_PER_USER))
        items = preset.items if preset else max(1, round(_ITEMS_PER_100K * scale))
        return cls(
            events=events,
            users=options.get("users", users),
            items=options.get("items", items),
            seed=options.get("seed", 0),
            config=preset.config if preset else SyntheticConfig(),
        )

    def generate(self) -> Dataset:
        return generate_synthetic(
            self.events, n_users=self.users, n_items=self.items, seed=self.seed, config=self.config
        )


def _count(text: str, name: str) -> int:
    number, multiplier = text.lower(), 1
    if number and number[-1] in _SUFFIXES:
        number, multiplier = number[:-1], _SUFFIXES[number[-1]]
    try:
        return round(float(number) * multiplier)
    except ValueError:
        raise DatasetError(f"cannot read {name!r}: {text!r} is not a number") from None


def load_dataset_from_settings(name: str, settings: Settings) -> Dataset:
    """The dataset ``name`` names: generated for a synthetic name, else :func:`load_dataset`
    with the directories and download switch of ``settings.data``."""
    spec = SyntheticSpec.parse(name)
    if spec is not None:
        return spec.generate()
    if name.startswith(RATINGS_FILE_PREFIX):
        return load_ratings_file(name.removeprefix(RATINGS_FILE_PREFIX))
    data = settings.data
    return load_dataset(
        name,
        data_dir=data.data_dir,
        cache_dir=data.cache_dir,
        allow_download=data.allow_download,
    )
