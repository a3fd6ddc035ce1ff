"""A model's figures in a prequential report: ranking at k, rating error, deciles.

These are plain values; :mod:`recsys_stream.evaluation.metrics` computes them. ``to_dict`` and
``from_dict`` give the JSON layout of ``report.json`` (flat keys spelled by
:func:`~recsys_stream.report.names.metric_name`).

>>> figures = RankingFigures(relevant=4, hr=0.5, ndcg=0.25, precision=0.05, recall=0.5, f1=0.09)
>>> figures.named(10)["hr@10"], figures.named(10, "warm")["ndcg@10_warm"]
(0.5, 0.25)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from recsys_stream.report.names import RANKING_METRICS, Scope, metric_name

_CONFUSION_KEYS = ("tp", "fp", "fn", "tn")


@dataclass(frozen=True, slots=True)
class RankingFigures:
    """HR, NDCG, precision, recall and F1 at the report's k over some relevant events."""

    relevant: int
    hr: float
    ndcg: float
    precision: float
    recall: float
    f1: float

    def named(self, k: int, scope: Scope = "all") -> dict[str, float]:
        """The five figures under their names (``hr@10``, ``hr@10_warm``, ...)."""
        return {metric_name(metric, k, scope): getattr(self, metric) for metric in RANKING_METRICS}

    @classmethod
    def from_named(
        cls, values: Mapping[str, Any], k: int, scope: Scope, relevant: int
    ) -> RankingFigures:
        return cls(
            relevant, *(float(values[metric_name(metric, k, scope)]) for metric in RANKING_METRICS)
        )


@dataclass(frozen=True, slots=True)
class Confusion:
    """The like/dislike confusion matrix (a like is a rating at or above the like threshold)."""

    tp: int
    fp: int
    fn: int
    tn: int


@dataclass(frozen=True, slots=True)
class RatingFigures:
    """Rating error of a model that predicts ratings, and its like/dislike classification."""

    rmse: float
    mae: float
    rmse_warm: float
    mae_warm: float
    rmse_last20: float
    confusion: Confusion
    like_accuracy: float
    like_precision: float
    like_recall: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RatingFigures:
        return cls(
            rmse=float(values["rmse"]),
            mae=float(values["mae"]),
            rmse_warm=float(values["rmse_warm"]),
            mae_warm=float(values["mae_warm"]),
            rmse_last20=float(values["rmse_last20"]),
            confusion=Confusion(**{key: int(values["confusion"][key]) for key in _CONFUSION_KEYS}),
            like_accuracy=float(values["like_accuracy"]),
            like_precision=float(values["like_precision"]),
            like_recall=float(values["like_recall"]),
        )


@dataclass(frozen=True, slots=True)
class DecileFigures:
    """HR@k and NDCG@k over one tenth of the stream (by event position)."""

    decile: int
    relevant: int
    hr: float
    ndcg: float

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            "decile": self.decile,
            "relevant": self.relevant,
            metric_name("hr", k): self.hr,
            metric_name("ndcg", k): self.ndcg,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], k: int) -> DecileFigures:
        return cls(
            int(values["decile"]),
            int(values["relevant"]),
            float(values[metric_name("hr", k)]),
            float(values[metric_name("ndcg", k)]),
        )


@dataclass(frozen=True, slots=True)
class ModelFigures:
    """Everything a report says about one model over the stream."""

    overall: RankingFigures
    warm: RankingFigures
    """Relevant events of users with at least one earlier event."""
    last20: RankingFigures
    """The last 20% of the relevant events."""
    deciles: list[DecileFigures] = field(default_factory=list)
    rating: RatingFigures | None = None
    """None for a model that does not predict ratings (the baselines)."""

    def to_dict(self, k: int) -> dict[str, Any]:
        values: dict[str, Any] = {
            "relevant": self.overall.relevant,
            **self.overall.named(k),
            **self.warm.named(k, "warm"),
            **self.last20.named(k, "last20"),
            "relevant_warm": self.warm.relevant,
            "relevant_last20": self.last20.relevant,
            "deciles": [decile.to_dict(k) for decile in self.deciles],
        }
        if self.rating is not None:
            values.update(self.rating.to_dict())
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], k: int) -> ModelFigures:
        return cls(
            overall=RankingFigures.from_named(values, k, "all", int(values["relevant"])),
            warm=RankingFigures.from_named(values, k, "warm", int(values["relevant_warm"])),
            last20=RankingFigures.from_named(values, k, "last20", int(values["relevant_last20"])),
            deciles=[DecileFigures.from_dict(row, k) for row in values.get("deciles", [])],
            rating=RatingFigures.from_dict(values) if "rmse" in values else None,
        )
