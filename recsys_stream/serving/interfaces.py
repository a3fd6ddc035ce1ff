"""The interfaces between the core and its storage and transport adapters.

- :class:`OutputSink`: where the stream processor publishes (the embedded
  :class:`~recsys_stream.serving.memory.InMemorySink`, or Redis in the services);
- :class:`ServingCache`: what the API reads back from there;
- :class:`EventPublisher`: where the API sends real-time events (the embedded event log, or
  Kafka).

Adapters raise :class:`CacheUnavailableError` and :class:`PublishError`, so that callers can
fall back or answer 503 without knowing which store is behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from recsys_stream.events import RatingEvent
from recsys_stream.report import LiveFigures, SeriesPoint, StreamReport
from recsys_stream.serving.outputs import DeadLetter, UserRecommendations
from recsys_stream.serving.snapshot import ModelSnapshot, UserState


class OutputSink(Protocol):
    """Where the processor's results go (in memory, Redis, ...)."""

    def publish_recommendations(
        self, lists: Sequence[UserRecommendations], states: Sequence[UserState]
    ) -> None:
        """The top-K lists and serving states of the users a batch touched."""
        ...

    def publish_snapshot(self, snapshot: ModelSnapshot) -> None: ...

    def publish_metrics(self, report: StreamReport) -> None: ...

    def publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None: ...


class ServingCache(Protocol):
    """What the API reads: the trainer's outputs, wherever they are kept (Redis, memory).

    Every method may raise :class:`CacheUnavailableError` when the store is unreachable. The
    per-request reads are coroutines (the API awaits them on its event loop); the others are
    called from worker threads.
    """

    async def top_k(self, user_id: int) -> UserRecommendations | None:
        """The user's cached list (None when there is none, or it cannot be read)."""
        ...

    async def user_state(self, user_id: int) -> UserState | None: ...

    def snapshot(self) -> ModelSnapshot | None:
        """The current model snapshot (read whole, never half of two versions)."""
        ...

    def snapshot_name(self) -> str | None:
        """A cheap identifier of the current snapshot: poll it, fetch the snapshot on change."""
        ...

    def metrics(self) -> LiveFigures | None:
        """The latest figures (None until the trainer published its first report)."""
        ...

    def metrics_series(self, limit: int) -> list[SeriesPoint]:
        """The latest ``limit`` points of the figures' time series, oldest first."""
        ...

    def ping(self) -> bool: ...


class CacheUnavailableError(RuntimeError):
    """The serving cache (Redis) cannot be reached; callers fall back or answer 503."""


class EventPublisher(Protocol):
    """Where the API sends real-time events (the Kafka topic, or the embedded event log)."""

    async def publish(self, events: list[RatingEvent]) -> None:
        """Send all the events or raise :class:`PublishError` (nothing half-accepted)."""
        ...

    async def ping(self) -> bool: ...

    async def close(self) -> None:
        """Release connections (at the API's shutdown)."""
        ...


class PublishError(RuntimeError):
    """The events could not be handed to the event log; none of them was."""


class PublishUnconfirmedError(PublishError):
    """The event log did not confirm every event in time: those not yet sent were cancelled
    (none of them will be written later), but some may have been written before it failed."""

    def __init__(self, message: str, confirmed: int) -> None:
        super().__init__(message)
        self.confirmed = confirmed
        """Events the event log confirmed before it failed."""
