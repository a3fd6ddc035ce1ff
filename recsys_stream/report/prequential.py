"""The prequential report: what the evaluator measured, and what the stream processor adds.

:class:`PrequentialReport` is :meth:`PrequentialEvaluator.report
<recsys_stream.evaluation.prequential.PrequentialEvaluator.report>`'s answer;
:class:`StreamReport` is that report with the state of the learner at the time it was
published (model version, retrains, dead letters, consumer lag): what the output sinks receive,
and what they compact into :class:`~recsys_stream.report.live.LiveFigures` and
:class:`~recsys_stream.report.live.SeriesPoint` for serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from recsys_stream.report.figures import ModelFigures
from recsys_stream.report.live import LiveFigures, LiveModelFigures, PointFigures, SeriesPoint
from recsys_stream.report.series import RankingSeries, RatingSeries


@dataclass(frozen=True)
class PrequentialReport:
    """Every figure of the protocol for every model, with windowed time series."""

    events: int
    relevant_events: int
    users: int
    items: int
    k: int
    relevance_threshold: float
    like_threshold: float
    first_timestamp: float | None
    last_timestamp: float | None
    models: dict[str, ModelFigures]
    ranking_series: RankingSeries
    rating_series: RatingSeries | None = None
    """None when no model predicts ratings."""

    def to_dict(self) -> dict[str, Any]:
        series = self.ranking_series.to_dict(self.k)
        if self.rating_series is not None:
            series["rating"] = self.rating_series.to_dict()
        return {
            "events": self.events,
            "relevant_events": self.relevant_events,
            "users": self.users,
            "items": self.items,
            "k": self.k,
            "relevance_threshold": self.relevance_threshold,
            "like_threshold": self.like_threshold,
            "first_timestamp": self.first_timestamp,
            "last_timestamp": self.last_timestamp,
            "models": {name: figures.to_dict(self.k) for name, figures in self.models.items()},
            "series": series,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PrequentialReport:
        k = int(values["k"])
        series = values["series"]
        rating = series.get("rating")
        return cls(
            events=int(values["events"]),
            relevant_events=int(values["relevant_events"]),
            users=int(values["users"]),
            items=int(values["items"]),
            k=k,
            relevance_threshold=float(values["relevance_threshold"]),
            like_threshold=float(values["like_threshold"]),
            first_timestamp=_optional_float(values.get("first_timestamp")),
            last_timestamp=_optional_float(values.get("last_timestamp")),
            models={
                name: ModelFigures.from_dict(figures, k)
                for name, figures in values["models"].items()
            },
            ranking_series=RankingSeries.from_dict(series, k),
            rating_series=None if rating is None else RatingSeries.from_dict(rating),
        )


@dataclass(frozen=True)
class StreamReport:
    """A prequential report as published: with the learner's state at that moment."""

    prequential: PrequentialReport
    model_version: int
    retrains_completed: int
    dead_letters: int
    published_at: float
    consumer_lag: int | None = None
    """Messages in the source not yet consumed, where the source tells (Kafka does)."""

    def live(self) -> LiveFigures:
        """The latest figures for serving: no deciles, no series, the windows' last values."""
        report = self.prequential
        models = {}
        for name, figures in report.models.items():
            window = report.ranking_series.latest(name)
            models[name] = LiveModelFigures(
                overall=figures.overall,
                warm=figures.warm,
                last20=figures.last20,
                rating=figures.rating,
                hr_window=None if window is None else window[0],
                ndcg_window=None if window is None else window[1],
            )
        return LiveFigures(
            k=report.k,
            events=report.events,
            relevant_events=report.relevant_events,
            users=report.users,
            items=report.items,
            model_version=self.model_version,
            retrains_completed=self.retrains_completed,
            dead_letters=self.dead_letters,
            published_at=self.published_at,
            consumer_lag=self.consumer_lag,
            models=models,
        )

    def point(self) -> SeriesPoint:
        """One point of the live metrics' time series."""
        live = self.live()
        return SeriesPoint(
            k=live.k,
            published_at=self.published_at,
            events=live.events,
            model_version=self.model_version,
            models={
                name: PointFigures(
                    hr=figures.overall.hr,
                    ndcg=figures.overall.ndcg,
                    rmse=None if figures.rating is None else figures.rating.rmse,
                    hr_window=figures.hr_window,
                    ndcg_window=figures.ndcg_window,
                )
                for name, figures in live.models.items()
            },
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.prequential.to_dict(),
            "model_version": self.model_version,
            "retrains_completed": self.retrains_completed,
            "dead_letters": self.dead_letters,
            "published_at": self.published_at,
            "consumer_lag": self.consumer_lag,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> StreamReport:
        lag = values.get("consumer_lag")
        return cls(
            prequential=PrequentialReport.from_dict(values),
            model_version=int(values["model_version"]),
            retrains_completed=int(values["retrains_completed"]),
            dead_letters=int(values["dead_letters"]),
            published_at=float(values["published_at"]),
            consumer_lag=None if lag is None else int(lag),
        )


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)
