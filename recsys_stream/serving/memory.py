"""The embedded cache: the stream processor's outputs kept in memory, served by the API.

It is both an :class:`~recsys_stream.serving.interfaces.OutputSink` (the processor writes to it)
and a :class:`~recsys_stream.serving.interfaces.ServingCache` (the API reads from it), so
``simulate --serve`` and the tests run the API without Redis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from recsys_stream.report import LiveFigures, SeriesPoint, StreamReport
from recsys_stream.serving.outputs import DeadLetter, UserRecommendations
from recsys_stream.serving.snapshot import ModelSnapshot, UserState


@dataclass
class InMemorySink:
    """Keeps the latest of everything in memory: the embedded mode's cache."""

    recommendations: dict[int, UserRecommendations] = field(default_factory=dict)
    states: dict[int, UserState] = field(default_factory=dict)
    latest_snapshot: ModelSnapshot | None = None
    latest_report: StreamReport | None = None
    """The latest report whole (the simulation reads it back for its run report)."""
    series: deque[SeriesPoint] = field(default_factory=lambda: deque(maxlen=10_000))
    dead_letters: deque[DeadLetter] = field(default_factory=lambda: deque(maxlen=1_000))
    """The latest dead letters (the trainer also sends each to the dead-letter topic)."""
    _live: LiveFigures | None = None

    # OutputSink

    def publish_recommendations(
        self, lists: Sequence[UserRecommendations], states: Sequence[UserState]
    ) -> None:
        for entry in lists:
            self.recommendations[entry.user_id] = entry
        for state in states:
            self.states[state.user_id] = state

    def publish_snapshot(self, snapshot: ModelSnapshot) -> None:
        self.latest_snapshot = snapshot

    def publish_metrics(self, report: StreamReport) -> None:
        self.latest_report = report
        self._live = report.live()
        self.series.append(report.point())

    def publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.dead_letters.extend(letters)

    # ServingCache

    async def top_k(self, user_id: int) -> UserRecommendations | None:
        return self.recommendations.get(user_id)

    async def user_state(self, user_id: int) -> UserState | None:
        return self.states.get(user_id)

    def snapshot(self) -> ModelSnapshot | None:
        return self.latest_snapshot

    def snapshot_name(self) -> str | None:
        snapshot = self.latest_snapshot
        return None if snapshot is None else f"{snapshot.version}:{id(snapshot)}"

    def metrics(self) -> LiveFigures | None:
        return self._live

    def metrics_series(self, limit: int) -> list[SeriesPoint]:
        return list(self.series)[-limit:]

    def ping(self) -> bool:
        return True
