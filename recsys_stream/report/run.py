"""A simulation run's report: the published report plus what describes the run itself.

This is ``report.json`` (:meth:`RunReport.to_dict`), which the renderers in
:mod:`recsys_stream.reporting` read back with :meth:`RunReport.from_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from recsys_stream.report.prequential import PrequentialReport, StreamReport


@dataclass(frozen=True)
class LossSeries:
    """The learner's training losses, one value per micro-batch (NaN: nothing to learn)."""

    event_index: list[int] = field(default_factory=list)
    ranking_loss: list[float] = field(default_factory=list)
    rating_loss: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "event_index": list(self.event_index),
            "ranking_loss": list(self.ranking_loss),
            "rating_loss": list(self.rating_loss),
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> LossSeries:
        nan = float("nan")
        return cls(
            [int(x) for x in values.get("event_index", [])],
            [nan if x is None else float(x) for x in values.get("ranking_loss", [])],
            [nan if x is None else float(x) for x in values.get("rating_loss", [])],
        )


@dataclass(frozen=True)
class RunReport:
    """A whole simulation run: the published report and what describes the run itself."""

    stream: StreamReport
    dataset: str
    batch_size: int
    wall_seconds: float
    events_per_second: float
    seconds_per_model: dict[str, float]
    device: str
    training_loss: LossSeries
    learner_config: dict[str, Any]
    """The learner's configuration as plain JSON values."""
    baseline_batching: str

    @property
    def prequential(self) -> PrequentialReport:
        return self.stream.prequential

    def to_dict(self) -> dict[str, Any]:
        """The layout of ``report.json``: one flat object."""
        return {
            **self.stream.to_dict(),
            "dataset": self.dataset,
            "batch_size": self.batch_size,
            "wall_seconds": self.wall_seconds,
            "events_per_second": self.events_per_second,
            "seconds_per_model": dict(self.seconds_per_model),
            "device": self.device,
            "training_loss": self.training_loss.to_dict(),
            "learner_config": self.learner_config,
            "baseline_batching": self.baseline_batching,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunReport:
        """Read ``report.json`` back (to render it again)."""
        return cls(
            stream=StreamReport.from_dict(values),
            dataset=str(values["dataset"]),
            batch_size=int(values["batch_size"]),
            wall_seconds=float(values["wall_seconds"]),
            events_per_second=float(values["events_per_second"]),
            seconds_per_model={
                name: float(seconds) for name, seconds in values["seconds_per_model"].items()
            },
            device=str(values["device"]),
            training_loss=LossSeries.from_dict(values.get("training_loss", {})),
            learner_config=dict(values.get("learner_config", {})),
            baseline_batching=str(values["baseline_batching"]),
        )
