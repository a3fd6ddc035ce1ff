"""HR@k and NDCG@k by bucket: how long the user's history was, how popular the item was.

Both are properties of the stream up to each event (its user's earlier ratings, its item's
earlier ratings), so a breakdown needs only the ratings and a model's per-event ranks
(:meth:`~recsys_stream.evaluation.PrequentialEvaluator.ranking_log`). They show where a model's
lead comes from: a sequence model should lead on users with a history, a popularity prior on
newcomers, and every model is weak on items with few ratings yet.

>>> import pandas as pd
>>> ratings = pd.DataFrame({"user_id": [1, 1, 2, 1], "item_id": [5, 6, 5, 5]})
>>> user_history(ratings).tolist(), item_popularity(ratings).tolist()
([0, 1, 0, 2], [0, 0, 1, 2])
>>> [(b.bucket, b.relevant, b.hr) for b in bucket_figures(
...     np.array([0, 1, 2]), np.array([3, 12, 0]), np.array([0, 1, 3]), (0, 1, 3), k=10)]
[('0', 1, 1.0), ('1-2', 1, 0.0), ('3+', 1, 1.0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = [
    "HISTORY_EDGES",
    "POPULARITY_EDGES",
    "BucketFigures",
    "bucket_figures",
    "item_popularity",
    "user_history",
]

HISTORY_EDGES: Final = (0, 1, 5, 20, 100)
"""Buckets of the user's earlier ratings: 0, 1-4, 5-19, 20-99, 100+."""
POPULARITY_EDGES: Final = (0, 1, 10, 100, 500)
"""Buckets of the item's earlier ratings: 0 (new), 1-9, 10-99, 100-499, 500+."""


@dataclass(frozen=True)
class BucketFigures:
    """A model's figures over the relevant events of one bucket."""

    bucket: str
    relevant: int
    hr: float
    ndcg: float


def user_history(ratings: pd.DataFrame) -> npt.NDArray[np.int64]:
    """For each event, how many ratings its user made before it."""
    return np.asarray(ratings.groupby("user_id", sort=False).cumcount(), dtype=np.int64)


def item_popularity(ratings: pd.DataFrame) -> npt.NDArray[np.int64]:
    """For each event, how many ratings its item had before it."""
    return np.asarray(ratings.groupby("item_id", sort=False).cumcount(), dtype=np.int64)


def bucket_figures(
    event_index: npt.NDArray[np.int64],
    ranks: npt.NDArray[np.int64],
    counts: npt.NDArray[np.int64],
    edges: tuple[int, ...],
    *,
    k: int,
) -> list[BucketFigures]:
    """Figures of the ranked events (``event_index``, ``ranks``) by the bucket of ``counts``
    (per stream event: :func:`user_history` or :func:`item_popularity`) between ``edges``."""
    values = counts[event_index]
    result = []
    for position, low in enumerate(edges):
        high = edges[position + 1] if position + 1 < len(edges) else None
        inside = values >= low if high is None else (values >= low) & (values < high)
        label = (
            f"{low}+" if high is None else (str(low) if high == low + 1 else f"{low}-{high - 1}")
        )
        chosen = ranks[inside]
        hits = chosen < k
        n = len(chosen)
        result.append(
            BucketFigures(
                bucket=label,
                relevant=n,
                hr=float(hits.mean()) if n else 0.0,
                ndcg=float(np.where(hits, 1.0 / np.log2(chosen + 2.0), 0.0).mean()) if n else 0.0,
            )
        )
    return result
