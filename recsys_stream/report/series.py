"""Time series of a prequential report: windowed figures along the stream.

Each point is the figure over the last ``window`` relevant (or rated) events, every ``step`` of
them; ``event_index`` is the number of events processed at that point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys_stream.report.names import metric_name


@dataclass(frozen=True, slots=True)
class WindowedRanking:
    """One model's windowed HR@k and NDCG@k, a value per point of the series."""

    hr: list[float]
    ndcg: list[float]


@dataclass(frozen=True, slots=True)
class RankingSeries:
    """Windowed ranking figures of every model, on shared points."""

    window: int
    step: int
    event_index: list[int] = field(default_factory=list)
    models: dict[str, WindowedRanking] = field(default_factory=dict)

    def latest(self, model: str) -> tuple[float, float] | None:
        """The model's windowed ``(hr, ndcg)`` at the last point, or None when it has none."""
        series = self.models.get(model)
        if series is None or not series.hr:
            return None
        return series.hr[-1], series.ndcg[-1]

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            "window": self.window,
            "step": self.step,
            "event_index": list(self.event_index),
            "models": {
                name: {metric_name("hr", k): list(s.hr), metric_name("ndcg", k): list(s.ndcg)}
                for name, s in self.models.items()
            },
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], k: int) -> RankingSeries:
        return cls(
            window=int(values["window"]),
            step=int(values["step"]),
            event_index=[int(x) for x in values.get("event_index", [])],
            models={
                name: WindowedRanking(
                    _floats(s.get(metric_name("hr", k))), _floats(s.get(metric_name("ndcg", k)))
                )
                for name, s in values.get("models", {}).items()
            },
        )


@dataclass(frozen=True, slots=True)
class RatingSeries:
    """Windowed RMSE of every rating model, on shared points."""

    window: int
    event_index: list[int] = field(default_factory=list)
    rmse: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "event_index": list(self.event_index),
            "models": {name: {"rmse": list(values)} for name, values in self.rmse.items()},
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RatingSeries:
        return cls(
            window=int(values["window"]),
            event_index=[int(x) for x in values.get("event_index", [])],
            rmse={name: _floats(s.get("rmse")) for name, s in values.get("models", {}).items()},
        )


def _floats(values: Any) -> list[float]:
    """A JSON list of numbers; null (how JSON writes NaN) becomes NaN."""
    return [float("nan") if value is None else float(value) for value in values or []]
