"""The shape of a rating stream in a few figures, to compare a synthetic stream with a real one.

Popularity (how concentrated the ratings are on few items, how long the tail of items rated once
is), user activity, burstiness (how often a user's next rating follows within the hour), how the
stream is spread in time, and repeats (pairs rated more than once).

>>> from recsys_stream.data import generate_synthetic
>>> profile = StreamProfile.of(generate_synthetic(2_000, n_users=40, n_items=300, seed=1))
>>> profile.events, profile.users, profile.repeat_pair_share
(2000, 40, 0.0)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from recsys_stream.data.movielens import Dataset

__all__ = ["StreamProfile"]

_HOUR = 3_600


@dataclass(frozen=True)
class StreamProfile:
    """Figures of one stream (``ratings`` in stream order)."""

    events: int
    users: int
    items: int
    """Items rated at least once."""
    span_days: float
    top_decile_item_share: float
    """Share of the ratings that go to the 10% most rated items."""
    item_gini: float
    """Gini coefficient of the ratings per rated item (0: even, 1: all on one)."""
    items_rated_once_share: float
    ratings_per_user_min: int
    ratings_per_user_median: float
    ratings_per_user_max: int
    next_within_hour_share: float
    """Share of a user's ratings (after their first) that follow their previous within 1 h."""
    first_tenth_of_span_share: float
    """Share of the ratings in the first tenth of the stream's time span."""
    repeat_pair_share: float
    """Share of the ratings whose (user, item) pair was rated before."""
    half_star_share: float

    @classmethod
    def of(cls, dataset: Dataset) -> StreamProfile:
        frame = dataset.ratings
        users = frame.user_id.to_numpy()
        timestamps = frame.timestamp.to_numpy()
        per_item = np.sort(frame.item_id.value_counts().to_numpy())[::-1]
        per_user = frame.user_id.value_counts().to_numpy()
        top = max(1, len(per_item) // 10)
        # Each user's ratings in stream order, then the gap to the previous one of the same user.
        order = np.lexsort((np.arange(len(users)), users))
        same_user = users[order][1:] == users[order][:-1]
        gaps = np.diff(timestamps[order])[same_user]
        span = float(timestamps[-1] - timestamps[0]) if len(timestamps) else 0.0
        early = timestamps < timestamps[0] + span / 10 if len(timestamps) else np.array([])
        return cls(
            events=len(frame),
            users=len(per_user),
            items=len(per_item),
            span_days=span / 86_400,
            top_decile_item_share=float(per_item[:top].sum() / max(1, per_item.sum())),
            item_gini=_gini(per_item),
            items_rated_once_share=float((per_item == 1).mean()) if len(per_item) else 0.0,
            ratings_per_user_min=int(per_user.min()) if len(per_user) else 0,
            ratings_per_user_median=float(np.median(per_user)) if len(per_user) else 0.0,
            ratings_per_user_max=int(per_user.max()) if len(per_user) else 0,
            next_within_hour_share=float((gaps < _HOUR).mean()) if len(gaps) else 0.0,
            first_tenth_of_span_share=float(early.mean()) if len(early) else 0.0,
            repeat_pair_share=float(frame.duplicated(["user_id", "item_id"]).mean()),
            half_star_share=float((frame.rating.to_numpy() % 1 != 0).mean()),
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _gini(counts: npt.NDArray[np.integer[Any]]) -> float:
    if len(counts) == 0 or counts.sum() == 0:
        return 0.0
    ascending = np.sort(counts).astype(np.float64)
    n = len(ascending)
    cumulative = np.cumsum(ascending)
    return float((n + 1 - 2 * (cumulative / cumulative[-1]).sum()) / n)
