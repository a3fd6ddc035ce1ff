"""The compact figures that serving reads: the latest per model, and points of a time series.

The trainer publishes a :class:`LiveFigures` and a :class:`SeriesPoint` with each report (see
:meth:`StreamReport.live <recsys_stream.report.prequential.StreamReport.live>`); the cache keeps
the latest figures and a bounded list of points, and the API answers them.

>>> from recsys_stream.report.figures import RankingFigures
>>> flat = RankingFigures(10, 0.2, 0.1, 0.02, 0.2, 0.036)
>>> model = LiveModelFigures(flat, flat, flat, None, hr_window=0.25, ndcg_window=0.12)
>>> model.to_dict(10)["hr@10_window"]
0.25
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsys_stream.report.figures import RankingFigures, RatingFigures
from recsys_stream.report.names import metric_name


@dataclass(frozen=True, slots=True)
class LiveModelFigures:
    """One model's latest figures: overall, warm users, last 20%, rating, sliding window."""

    overall: RankingFigures
    warm: RankingFigures
    last20: RankingFigures
    rating: RatingFigures | None
    hr_window: float | None
    ndcg_window: float | None

    def to_dict(self, k: int) -> dict[str, Any]:
        values: dict[str, Any] = {
            "relevant": self.overall.relevant,
            **self.overall.named(k),
            **self.warm.named(k, "warm"),
            **self.last20.named(k, "last20"),
            "relevant_warm": self.warm.relevant,
            "relevant_last20": self.last20.relevant,
        }
        if self.rating is not None:
            values.update(self.rating.to_dict())
        values[metric_name("hr", k, "window")] = self.hr_window
        values[metric_name("ndcg", k, "window")] = self.ndcg_window
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], k: int) -> LiveModelFigures:
        return cls(
            overall=RankingFigures.from_named(values, k, "all", int(values["relevant"])),
            warm=RankingFigures.from_named(values, k, "warm", int(values["relevant_warm"])),
            last20=RankingFigures.from_named(values, k, "last20", int(values["relevant_last20"])),
            rating=RatingFigures.from_dict(values) if "rmse" in values else None,
            hr_window=_optional_float(values.get(metric_name("hr", k, "window"))),
            ndcg_window=_optional_float(values.get(metric_name("ndcg", k, "window"))),
        )


@dataclass(frozen=True)
class LiveFigures:
    """The latest figures of every model and the stream's counters."""

    k: int
    events: int
    relevant_events: int
    users: int
    items: int
    model_version: int
    retrains_completed: int
    dead_letters: int
    published_at: float
    consumer_lag: int | None
    models: dict[str, LiveModelFigures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": {name: figures.to_dict(self.k) for name, figures in self.models.items()},
            "events": self.events,
            "relevant_events": self.relevant_events,
            "users": self.users,
            "items": self.items,
            "k": self.k,
            "model_version": self.model_version,
            "retrains_completed": self.retrains_completed,
            "dead_letters": self.dead_letters,
            "published_at": self.published_at,
            "consumer_lag": self.consumer_lag,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LiveFigures:
        k = int(values["k"])
        lag = values.get("consumer_lag")
        return cls(
            k=k,
            events=int(values["events"]),
            relevant_events=int(values["relevant_events"]),
            users=int(values["users"]),
            items=int(values["items"]),
            model_version=int(values["model_version"]),
            retrains_completed=int(values["retrains_completed"]),
            dead_letters=int(values["dead_letters"]),
            published_at=float(values["published_at"]),
            consumer_lag=None if lag is None else int(lag),
            models={
                name: LiveModelFigures.from_dict(figures, k)
                for name, figures in values["models"].items()
            },
        )


@dataclass(frozen=True, slots=True)
class PointFigures:
    """One model at one point of the series: overall and windowed HR@k and NDCG@k, RMSE."""

    hr: float
    ndcg: float
    rmse: float | None
    hr_window: float | None
    ndcg_window: float | None

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            metric_name("hr", k): self.hr,
            metric_name("ndcg", k): self.ndcg,
            "rmse": self.rmse,
            metric_name("hr", k, "window"): self.hr_window,
            metric_name("ndcg", k, "window"): self.ndcg_window,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], k: int) -> PointFigures:
        return cls(
            hr=float(values[metric_name("hr", k)]),
            ndcg=float(values[metric_name("ndcg", k)]),
            rmse=_optional_float(values.get("rmse")),
            hr_window=_optional_float(values.get(metric_name("hr", k, "window"))),
            ndcg_window=_optional_float(values.get(metric_name("ndcg", k, "window"))),
        )


@dataclass(frozen=True)
class SeriesPoint:
    """One point of the live metrics' time series."""

    k: int
    published_at: float
    events: int
    model_version: int
    models: dict[str, PointFigures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "published_at": self.published_at,
            "events": self.events,
            "model_version": self.model_version,
            "k": self.k,
            "models": {name: figures.to_dict(self.k) for name, figures in self.models.items()},
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SeriesPoint:
        k = int(values["k"])
        return cls(
            k=k,
            published_at=float(values["published_at"]),
            events=int(values["events"]),
            model_version=int(values["model_version"]),
            models={
                name: PointFigures.from_dict(figures, k)
                for name, figures in values["models"].items()
            },
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
