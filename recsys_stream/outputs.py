"""What the stream processor emits, and the in-memory store of it (the embedded cache).

Kept apart from the processor so that readers of the outputs (the API, the Redis adapter) do
not import the learner and torch.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from recsys_stream.serving import ModelSnapshot, UserState


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be used, with why and where it came from."""

    payload: bytes | None
    reason: str
    source: str = ""
    """Where it was read (e.g. ``ratings/2@1234``), for the operator who replays it."""


@dataclass(frozen=True, slots=True)
class UserRecommendations:
    """A user's current top-K list as published after a micro-batch."""

    user_id: int
    item_ids: list[int]
    scores: list[float]
    model_version: int
    updated_at: float


class OutputSink(Protocol):
    """Where the processor's results go (in memory, Redis, ...)."""

    def publish_recommendations(
        self, lists: Sequence[UserRecommendations], states: Sequence[UserState]
    ) -> None:
        """The top-K lists and serving states of the users a batch touched."""
        ...

    def publish_snapshot(self, snapshot: ModelSnapshot) -> None: ...

    def publish_metrics(self, metrics: dict[str, Any]) -> None: ...

    def publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...


@dataclass
class InMemorySink:
    """Keeps the latest of everything in memory: the embedded mode's cache, which the API can
    serve from (it is a :class:`~recsys_stream.serving.ServingCache`)."""

    recommendations: dict[int, UserRecommendations] = field(default_factory=dict)
    states: dict[int, UserState] = field(default_factory=dict)
    latest_snapshot: ModelSnapshot | None = None
    metrics_report: dict[str, Any] = field(default_factory=dict)
    series: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=10_000))
    dead_letters: deque[DeadLetter] = field(default_factory=lambda: deque(maxlen=1_000))
    """The latest dead letters (the trainer also sends each to the dead-letter topic)."""

    def publish_recommendations(
        self, lists: Sequence[UserRecommendations], states: Sequence[UserState]
    ) -> None:
        for entry in lists:
            self.recommendations[entry.user_id] = entry
        for state in states:
            self.states[state.user_id] = state

    def publish_snapshot(self, snapshot: ModelSnapshot) -> None:
        self.latest_snapshot = snapshot

    def publish_metrics(self, metrics: dict[str, Any]) -> None:
        self.metrics_report = metrics
        self.series.append(metrics_point(metrics))

    def publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.dead_letters.extend(letters)

    # ServingCache
    async def top_k(self, user_id: int) -> dict[str, object] | None:
        entry = self.recommendations.get(user_id)
        if entry is None:
            return None
        # Shallow on purpose (asdict deep-copies the lists): this is the API's hot path.
        return {
            "user_id": entry.user_id,
            "item_ids": entry.item_ids,
            "scores": entry.scores,
            "model_version": entry.model_version,
            "updated_at": entry.updated_at,
        }

    async def user_state(self, user_id: int) -> UserState | None:
        return self.states.get(user_id)

    def snapshot(self) -> ModelSnapshot | None:
        return self.latest_snapshot

    def snapshot_name(self) -> str | None:
        snapshot = self.latest_snapshot
        return None if snapshot is None else f"{snapshot.version}:{id(snapshot)}"

    def metrics(self) -> dict[str, object] | None:
        return compact_report(self.metrics_report) if self.metrics_report else None

    def metrics_series(self, limit: int) -> list[dict[str, object]]:
        return list(self.series)[-limit:]

    def ping(self) -> bool:
        return True


def compact_report(report: dict[str, Any]) -> dict[str, Any]:
    """The latest figures for serving: per model the overall figures and the last value of each
    windowed series (``hr@10_window``...), without the long arrays (those are in the series)."""
    models = {}
    windowed = report.get("series", {}).get("models", {})
    for name, figures in report.get("models", {}).items():
        entry = {key: value for key, value in figures.items() if key != "deciles"}
        for key, values in windowed.get(name, {}).items():
            entry[f"{key}_window"] = values[-1] if values else None
        models[name] = entry
    keep = (
        "events",
        "relevant_events",
        "users",
        "items",
        "k",
        "model_version",
        "retrains_completed",
        "dead_letters",
        "published_at",
        "consumer_lag",
    )
    return {"models": models, **{key: report[key] for key in keep if key in report}}


def metrics_point(report: dict[str, Any]) -> dict[str, Any]:
    """One point of the live metrics' time series: overall and windowed figures per model."""
    k = report.get("k", 10)
    point: dict[str, Any] = {
        "published_at": report.get("published_at"),
        "events": report.get("events"),
        "model_version": report.get("model_version"),
        "models": {},
    }
    windowed = report.get("series", {}).get("models", {})
    for name, figures in report.get("models", {}).items():
        window = windowed.get(name, {})
        point["models"][name] = {
            f"hr@{k}": figures.get(f"hr@{k}"),
            f"ndcg@{k}": figures.get(f"ndcg@{k}"),
            "rmse": figures.get("rmse"),
            f"hr@{k}_window": (window.get(f"hr@{k}") or [None])[-1],
            f"ndcg@{k}_window": (window.get(f"ndcg@{k}") or [None])[-1],
        }
    return point
