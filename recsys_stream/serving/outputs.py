"""What the stream processor publishes besides snapshots and reports: top-K lists, dead letters."""

from __future__ import annotations

from dataclasses import dataclass

from recsys_stream.events import ErrorCode


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be used, with why and where it came from."""

    payload: bytes | None
    reason: str
    source: str = ""
    """Where it was read (e.g. ``ratings/2@1234``), for the operator who replays it."""
    code: ErrorCode = "invalid_field"
    """The kind of defect (see :class:`~recsys_stream.events.EventValidationError`)."""
    index: int | None = None
    """The event's position in its envelope (None: the whole message)."""


@dataclass(frozen=True, slots=True)
class UserRecommendations:
    """A user's current top-K list as published after a micro-batch."""

    user_id: int
    item_ids: list[int]
    scores: list[float]
    model_version: int
    updated_at: float
    """Unix time at which the list was computed."""
