"""The trainer's logic, without Faust: positions, exactly-once learning, checkpoints, status.

Delivery is at-least-once in and exactly-once in learning:

- every message carries its coordinates (topic, partition, offset);
- the checkpoint stores, per partition, the offset of the next message not yet learned;
- a message below that offset was learned before a restart and is skipped;
- the Faust adapter acknowledges a message (so its offset may be committed) only once a
  checkpoint that includes it is on disk, so Kafka never resumes past what is durable.

The Faust app (``services/trainer/app.py``) only moves messages between Kafka and this class.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from recsys_stream.report import LiveFigures
from recsys_stream.serving import DeadLetter, InMemorySink, OutputSink
from recsys_stream.settings import Settings
from recsys_stream.stream import (
    CheckpointError,
    StreamProcessor,
    load_checkpoint,
    restore_processor,
)
from recsys_stream.stream import save_checkpoint as write_checkpoint

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Message:
    """A consumed message: its bytes and where it came from."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp: float | None = None
    """Kafka's message timestamp (produce time), seconds."""

    @property
    def source(self) -> str:
        return f"{self.topic}/{self.partition}"


@dataclass(frozen=True, slots=True)
class Handled:
    """What one batch of messages did."""

    learned: int
    dead_letters: list[DeadLetter]
    learned_per_message: list[int] = field(default_factory=list)
    """Events learned from each message of the batch, in order (0 for a skipped one; an
    envelope holds many)."""

    @property
    def events(self) -> int:
        """Events in the messages not skipped, valid or not."""
        return self.learned + len(self.dead_letters)


@dataclass(frozen=True, slots=True)
class CheckpointStatus:
    """The trainer's checkpoints so far."""

    written_at: float | None = None
    """Unix time of the last checkpoint written by this process (None: none yet)."""
    seconds: float | None = None
    """How long the last write took."""
    written: int = 0


@dataclass(frozen=True)
class CoreStatus:
    """Where the learner stands: what the status file, ``/metrics`` and ``/readyz`` report."""

    pid: int
    started_at: float
    events_learned: int
    """Every event learned, those restored from the checkpoint included."""
    events_evaluated: int
    positions: dict[str, int]
    dead_letters: int
    model_version: int
    retrains_completed: int
    last_learned_at: float | None
    checkpoint: CheckpointStatus = field(default_factory=CheckpointStatus)
    live: LiveFigures | None = None
    """The latest published prequential figures."""


class TrainerCore:
    """Learns batches of Kafka messages exactly once and checkpoints them."""

    def __init__(self, settings: Settings, sink: OutputSink | None = None) -> None:
        self.settings = settings
        self.sink = sink if sink is not None else InMemorySink()
        self.processor = StreamProcessor.create(settings.learner, settings.stream, self.sink)
        self.positions: dict[str, int] = {}
        self.learned_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.started_at = time.time()
        self.last_learned_at: float | None = None
        """Wall-clock time at which the latest batch was learned."""
        self._checkpoint = CheckpointStatus()

    # ---------------------------------------------------------------------- restore

    def restore(self) -> bool:
        """Load the latest checkpoint if there is one; True if it was loaded."""
        path = self.settings.trainer.checkpoint_path
        if not path.exists():
            log.info("no checkpoint at %s: starting from an empty model", path)
            return False
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            log.exception("checkpoint %s unusable; starting from scratch", path)
            return False
        restore_processor(self.processor, state)
        self.positions = {key: int(value) for key, value in state["positions"].items()}
        learner = self.processor.learner
        log.info(
            "restored checkpoint %s: %d events learned, model version %d, positions %s",
            path,
            learner.events_learned,
            learner.version,
            self.positions,
            extra={
                "checkpoint": str(path),
                "events_learned": learner.events_learned,
                "model_version": learner.version,
                "positions": dict(self.positions),
            },
        )
        return True

    # ----------------------------------------------------------------------- learning

    def already_learned(self, message: Message) -> bool:
        return message.offset < self.positions.get(message.source, 0)

    def handle(self, messages: Sequence[Message]) -> Handled:
        """Learn the messages not learned before (in order); route the invalid ones."""
        # A message below the checkpoint's position was learned before a restart: skipped.
        fresh = [not self.already_learned(m) for m in messages]
        chosen = [m for m, new in zip(messages, fresh, strict=True) if new]
        if not chosen:
            return Handled(0, [], [0] * len(messages))
        result = self.processor.process_records(
            [m.value for m in chosen], [f"{m.source}@{m.offset}" for m in chosen]
        )
        for message in chosen:
            key = message.source
            self.positions[key] = max(self.positions.get(key, 0), message.offset + 1)
        self.learned_since_checkpoint += result.learned
        if result.learned:
            self.last_learned_at = time.time()
        learned = iter(result.valid_per_message)
        per_message = [next(learned) if new else 0 for new in fresh]
        return Handled(result.learned, result.dead_letters, per_message)

    # -------------------------------------------------------------------- checkpoints

    def checkpoint_due(self) -> bool:
        trainer = self.settings.trainer
        return self.learned_since_checkpoint >= trainer.checkpoint_every_events or (
            self.learned_since_checkpoint > 0
            and time.monotonic() - self.last_checkpoint >= trainer.checkpoint_every_seconds
        )

    def save_checkpoint(self) -> None:
        started = time.perf_counter()
        write_checkpoint(self.settings.trainer.checkpoint_path, self.processor, self.positions)
        seconds = time.perf_counter() - started
        self.learned_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self._checkpoint = CheckpointStatus(time.time(), seconds, self._checkpoint.written + 1)
        log.info(
            "checkpoint written in %.2f s: %d events learned",
            seconds,
            self.processor.learner.events_learned,
            extra={"seconds": seconds, "events_learned": self.processor.learner.events_learned},
        )

    # ------------------------------------------------------------------------- status

    def status(self) -> CoreStatus:
        learner = self.processor.learner
        report = self.processor.latest_report
        return CoreStatus(
            pid=os.getpid(),
            started_at=self.started_at,
            events_learned=learner.events_learned,
            events_evaluated=self.processor.evaluator.events_seen,
            positions=dict(self.positions),
            dead_letters=self.processor.dead_letters,
            model_version=learner.version,
            retrains_completed=learner.retrains_completed,
            last_learned_at=self.last_learned_at,
            checkpoint=self._checkpoint,
            live=None if report is None else report.live(),
        )

    def close(self) -> None:
        self.processor.learner.close()
