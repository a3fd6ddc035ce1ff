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
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from recsys_stream.files import atomic_write
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
    skipped: int
    dead_letters: list[DeadLetter]


class TrainerCore:
    """Learns batches of Kafka messages exactly once and checkpoints them."""

    def __init__(self, settings: Settings, sink: OutputSink | None = None) -> None:
        self.settings = settings
        self.sink = sink if sink is not None else InMemorySink()
        self.processor = StreamProcessor.create(settings.learner, settings.stream, self.sink)
        self.positions: dict[str, int] = {}
        self.learned_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self.freshness: deque[float] = deque(maxlen=10_000)
        self.dead_letters = 0
        self.started_at = time.time()
        self.last_learned_at: float | None = None
        """Wall-clock time at which the latest batch was learned."""

    # ---------------------------------------------------------------------- restore

    def restore(self) -> bool:
        """Load the latest checkpoint if there is one; True if it was loaded."""
        path = self.settings.trainer.checkpoint_path
        if not path.exists():
            return False
        try:
            state = load_checkpoint(path)
        except CheckpointError:
            log.exception("checkpoint %s unusable; starting from scratch", path)
            return False
        restore_processor(self.processor, state)
        self.positions = {key: int(value) for key, value in state["positions"].items()}
        log.info(
            "restored %s: %d events learned, positions %s",
            path,
            self.processor.learner.events_learned,
            self.positions,
        )
        return True

    # ----------------------------------------------------------------------- learning

    def already_learned(self, message: Message) -> bool:
        return message.offset < self.positions.get(message.source, 0)

    def handle(self, messages: Sequence[Message]) -> Handled:
        """Learn the messages not learned before (in order); route the invalid ones."""
        fresh = [m for m in messages if not self.already_learned(m)]
        skipped = len(messages) - len(fresh)
        if not fresh:
            return Handled(0, skipped, [])
        result = self.processor.process_records(
            [m.value for m in fresh], [f"{m.source}@{m.offset}" for m in fresh]
        )
        letters = result.dead_letters
        for message in fresh:
            key = message.source
            self.positions[key] = max(self.positions.get(key, 0), message.offset + 1)
        now = time.time()
        self.freshness.extend(
            now - m.timestamp for m in fresh if m.timestamp is not None and m.value is not None
        )
        self.learned_since_checkpoint += result.learned
        self.dead_letters += len(letters)
        if result.learned:
            self.last_learned_at = now
        return Handled(result.learned, skipped, letters)

    # -------------------------------------------------------------------- checkpoints

    def checkpoint_due(self) -> bool:
        trainer = self.settings.trainer
        return self.learned_since_checkpoint >= trainer.checkpoint_every_events or (
            self.learned_since_checkpoint > 0
            and time.monotonic() - self.last_checkpoint >= trainer.checkpoint_every_seconds
        )

    def save_checkpoint(self) -> None:
        write_checkpoint(self.settings.trainer.checkpoint_path, self.processor, self.positions)
        self.learned_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------------- status

    def status(self) -> dict[str, Any]:
        learner = self.processor.learner
        latencies = np.asarray(self.freshness)
        return {
            "events_learned": learner.events_learned,
            "events_evaluated": self.processor.evaluator.events_seen,
            "positions": dict(self.positions),
            "dead_letters": self.dead_letters,
            "model_version": learner.version,
            "consumer_lag": self.processor.consumer_lag,
            "retrains_completed": learner.retrains_completed,
            "freshness_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "freshness_p99_s": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "last_learned_at": self.last_learned_at,
            "updated_at": time.time(),
            "started_at": self.started_at,
            "pid": os.getpid(),
        }

    def write_status(self, path: Path) -> None:
        atomic_write(path, orjson.dumps(self.status()), durable=False)

    def close(self) -> None:
        self.processor.learner.close()
