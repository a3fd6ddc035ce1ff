"""Synthetic streams shaped like the MovieLens variants that are not at hand.

Each preset takes the published statistics of its variant (the GroupLens READMEs and Harper &
Konstan, "The MovieLens Datasets", 2015): users, items, ratings, time span, the minimum number of
ratings per user, the rating scale. What the statistics do not give is a guess, named in each
preset's ``guesses``; ``benchmarks/bench_presets.py`` measures how each preset's popularity
curve, burstiness and user activity compare with MovieLens 100K's.

>>> sorted(PRESETS)
['ml-1m-like', 'ml-latest-small-like']
>>> PRESETS["ml-1m-like"].users, PRESETS["ml-1m-like"].config.onboarding_events
(6040, 20)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from recsys_stream.data.synthetic import SyntheticConfig

__all__ = ["PRESETS", "SyntheticPreset"]

_DAY: Final = 86_400


@dataclass(frozen=True)
class SyntheticPreset:
    """A variant's size and the generator's settings that give its shape."""

    events: int
    users: int
    items: int
    config: SyntheticConfig
    published: str
    """The statistics the preset follows, and where they come from."""
    guesses: str
    """What the statistics leave open and the preset chose."""


PRESETS: Final[dict[str, SyntheticPreset]] = {
    "ml-1m-like": SyntheticPreset(
        events=1_000_209,
        users=6_040,
        items=3_706,
        config=SyntheticConfig(
            start_timestamp=956_703_932,  # 2000-04-25, ML-1M's first rating
            duration_s=1_038 * _DAY,  # to 2003-02-28, its last
            join_fraction=0.25,
            session_start_mean_s=30.0 * _DAY,
            onboarding_events=20,
            mean_session_length=40.0,
            initial_item_fraction=0.95,
        ),
        published=(
            "ML-1M README: 1,000,209 ratings of 3,706 movies by 6,040 users who joined in 2000, "
            "each with at least 20 ratings, whole stars; ratings from 2000-04-25 to 2003-02-28"
        ),
        guesses=(
            "users join over the first quarter of the span and are most active in their first "
            "month (an exponential delay of mean 30 days between sessions' starts and joining); "
            "sessions of 40 ratings on average; 95% of the films exist at the start; Zipf "
            "exponents, genres and the rating model are the generator's defaults"
        ),
    ),
    "ml-latest-small-like": SyntheticPreset(
        events=100_836,
        users=610,
        items=9_742,
        config=SyntheticConfig(
            start_timestamp=828_124_615,  # 1996-03-29, ml-latest-small's first rating
            duration_s=8_215 * _DAY,  # to 2018-09-24, its last
            half_stars=True,
            join_fraction=0.95,
            session_start_mean_s=120.0 * _DAY,
            onboarding_events=20,
            user_activity_exponent=0.6,
            initial_item_fraction=0.5,
        ),
        published=(
            "ml-latest-small README: 100,836 ratings of 9,742 movies by 610 users, each with "
            "at least 20 ratings, half stars 0.5-5, from 1996-03-29 to 2018-09-24"
        ),
        guesses=(
            "users join uniformly over the span and are most active in their first four "
            "months; user activity Zipf 0.6 (a few users with thousands of ratings); half "
            "the films released over the span; item popularity Zipf 1.0, which leaves a long "
            "tail of films rated once"
        ),
    ),
}
