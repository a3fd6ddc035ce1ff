"""Per-event records of a prequential run, and the metrics derived from them.

The evaluator keeps one small record per evaluated event (the rank of the held-out item, or the
rating error), so that every breakdown the protocol asks for — warm users, the last 20%, deciles,
a sliding window — is computed from the same data at report time, for any prefix of the stream.

>>> log = RankingLog(k=10)
>>> log.append(event_index=np.array([0, 5]), ranks=np.array([0, 40]), warm=np.array([0, 1]))
>>> overall = log.overall()
>>> overall.hr, round(overall.ndcg, 3), overall.relevant
(0.5, 0.5, 2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from recsys_stream.report import (
    Confusion,
    DecileFigures,
    RankingFigures,
    RatingFigures,
    WindowedRanking,
)
from recsys_stream.settings import LIKE_THRESHOLD


class _Growable:
    """An append-only 1-d array with amortised growth."""

    def __init__(self, dtype: npt.DTypeLike) -> None:
        self._data = np.zeros(1024, dtype=dtype)
        self._size = 0

    def append(self, values: npt.ArrayLike) -> None:
        values = np.asarray(values)
        end = self._size + len(values)
        if end > len(self._data):
            self._data = np.resize(self._data, max(end, 2 * len(self._data)))
        self._data[self._size : end] = values
        self._size = end

    @property
    def values(self) -> npt.NDArray[Any]:
        return self._data[: self._size]

    def __len__(self) -> int:
        return self._size


def _ranking_figures(ranks: npt.NDArray[np.int64], k: int) -> RankingFigures:
    n = len(ranks)
    hits = ranks < k
    hit_rate = float(hits.mean()) if n else 0.0
    ndcg = float(np.where(hits, 1.0 / np.log2(ranks + 2.0), 0.0).mean()) if n else 0.0
    precision = hit_rate / k
    f1 = 2 * precision * hit_rate / (precision + hit_rate) if hit_rate else 0.0
    return RankingFigures(
        relevant=n, hr=hit_rate, ndcg=ndcg, precision=precision, recall=hit_rate, f1=f1
    )


class RankingLog:
    """Rank of the held-out item at every relevant event (``rank >= k`` is a miss)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._event_index = _Growable(np.int64)
        self._rank = _Growable(np.int16)  # capped at k: the exact rank of a miss is not needed
        self._warm = _Growable(np.bool_)

    def __len__(self) -> int:
        return len(self._rank)

    def append(
        self,
        event_index: npt.ArrayLike,
        ranks: npt.ArrayLike,
        warm: npt.ArrayLike,
    ) -> None:
        self._event_index.append(event_index)
        self._rank.append(np.minimum(np.asarray(ranks), self.k))
        self._warm.append(np.asarray(warm, dtype=bool))

    @property
    def ranks(self) -> npt.NDArray[np.int64]:
        return self._rank.values.astype(np.int64)

    @property
    def event_index(self) -> npt.NDArray[np.int64]:
        """The stream position of each ranked event."""
        return self._event_index.values

    def overall(self) -> RankingFigures:
        """Figures over every relevant event."""
        return _ranking_figures(self.ranks, self.k)

    def warm(self) -> RankingFigures:
        """Figures over the relevant events of users with at least one earlier event."""
        return _ranking_figures(self.ranks[self._warm.values], self.k)

    def last20(self) -> RankingFigures:
        """Figures over the last 20% of the relevant events (a fifth, rounded down)."""
        ranks = self.ranks
        return _ranking_figures(ranks[len(ranks) - len(ranks) // 5 :], self.k)

    def deciles(self, n_events: int) -> list[DecileFigures]:
        """Figures for each tenth of the stream (by event position, relevant events only)."""
        ranks, positions = self.ranks, self._event_index.values
        bounds = np.linspace(0, n_events, 11)
        result = []
        for decile in range(10):
            inside = (positions >= bounds[decile]) & (positions < bounds[decile + 1])
            figures = _ranking_figures(ranks[inside], self.k)
            result.append(DecileFigures(decile + 1, int(inside.sum()), figures.hr, figures.ndcg))
        return result

    def window_series(self, window: int, step: int) -> tuple[list[int], WindowedRanking]:
        """HR@k and NDCG@k over the last ``window`` relevant events, every ``step`` of them:
        ``(event_index, figures)``, the events processed at each point."""
        ranks = self.ranks
        hits = (ranks < self.k).astype(np.float64)
        gains = np.where(ranks < self.k, 1.0 / np.log2(ranks + 2.0), 0.0)
        ends = np.arange(step, len(ranks) + 1, step)
        if len(ranks) and (len(ends) == 0 or ends[-1] != len(ranks)):
            ends = np.append(ends, len(ranks))
        starts = np.maximum(ends - window, 0)
        hit_sums = np.concatenate([[0.0], np.cumsum(hits)])
        gain_sums = np.concatenate([[0.0], np.cumsum(gains)])
        sizes = ends - starts
        return (
            (self._event_index.values[ends - 1] + 1).tolist(),
            WindowedRanking(
                hr=((hit_sums[ends] - hit_sums[starts]) / sizes).tolist(),
                ndcg=((gain_sums[ends] - gain_sums[starts]) / sizes).tolist(),
            ),
        )

    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "event_index": self._event_index.values.copy(),
            "rank": self._rank.values.copy(),
            "warm": self._warm.values.copy(),
        }

    def load_state_dict(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.__init__(self.k)  # type: ignore[misc]
        self.append(state["event_index"], state["rank"], state["warm"])


class RatingLog:
    """Predicted and actual rating of every event, for RMSE, MAE and the like/dislike matrix."""

    def __init__(self, like_threshold: float = LIKE_THRESHOLD) -> None:
        self.like_threshold = like_threshold
        self._predicted = _Growable(np.float32)
        self._actual = _Growable(np.float32)
        self._warm = _Growable(np.bool_)

    def __len__(self) -> int:
        return len(self._actual)

    def append(self, predicted: npt.ArrayLike, actual: npt.ArrayLike, warm: npt.ArrayLike) -> None:
        self._predicted.append(predicted)
        self._actual.append(actual)
        self._warm.append(np.asarray(warm, dtype=bool))

    def summary(self) -> RatingFigures:
        predicted = self._predicted.values.astype(np.float64)
        actual = self._actual.values.astype(np.float64)
        warm = self._warm.values
        error = predicted - actual

        def rmse(e: npt.NDArray[np.float64]) -> float:
            return math.sqrt(float(np.mean(e**2))) if len(e) else 0.0

        def mae(e: npt.NDArray[np.float64]) -> float:
            return float(np.mean(np.abs(e))) if len(e) else 0.0

        predicted_like = predicted >= self.like_threshold
        actual_like = actual >= self.like_threshold
        tp = int(np.sum(predicted_like & actual_like))
        fp = int(np.sum(predicted_like & ~actual_like))
        fn = int(np.sum(~predicted_like & actual_like))
        tn = int(np.sum(~predicted_like & ~actual_like))
        last = error[len(error) - len(error) // 5 :]
        return RatingFigures(
            rmse=rmse(error),
            mae=mae(error),
            rmse_warm=rmse(error[warm]),
            mae_warm=mae(error[warm]),
            rmse_last20=rmse(last),
            confusion=Confusion(tp=tp, fp=fp, fn=fn, tn=tn),
            like_accuracy=(tp + tn) / len(error) if len(error) else 0.0,
            like_precision=tp / (tp + fp) if tp + fp else 0.0,
            like_recall=tp / (tp + fn) if tp + fn else 0.0,
        )

    def window_rmse(self, window: int, step: int) -> tuple[list[int], list[float]]:
        """RMSE over the last ``window`` events, every ``step`` events: (ends, values)."""
        squared = (self._predicted.values.astype(np.float64) - self._actual.values) ** 2
        sums = np.concatenate([[0.0], np.cumsum(squared)])
        ends = np.arange(step, len(squared) + 1, step)
        if len(squared) and (len(ends) == 0 or ends[-1] != len(squared)):
            ends = np.append(ends, len(squared))
        starts = np.maximum(ends - window, 0)
        rmse = np.sqrt((sums[ends] - sums[starts]) / (ends - starts))
        return [int(end) for end in ends], [float(x) for x in rmse]

    def state_dict(self) -> dict[str, npt.NDArray[Any]]:
        return {
            "predicted": self._predicted.values.copy(),
            "actual": self._actual.values.copy(),
            "warm": self._warm.values.copy(),
        }

    def load_state_dict(self, state: dict[str, npt.NDArray[Any]]) -> None:
        self.__init__(self.like_threshold)  # type: ignore[misc]
        self.append(state["predicted"], state["actual"], state["warm"])
