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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recsys_stream.report import LiveFigures
from recsys_stream.serving import DeadLetter, InMemorySink, OutputSink
from recsys_stream.settings import Settings
from recsys_stream.stream import (
    CheckpointStore,
    Replica,
    Restored,
    StreamProcessor,
    restore_processor,
)

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
    failures: int = 0
    """Writes that failed, in all."""
    failing_since: float | None = None
    """Unix time of the first of the failures since the last successful write (None: the
    last write succeeded)."""
    last_error: str | None = None
    sequence: int = 0
    """Sequence number of the newest checkpoint on disk (0: none)."""


@dataclass(frozen=True)
class GroupStatus:
    """A worker's part in its group, for its status and metrics."""

    worker: str
    leader: bool
    """This worker publishes the model snapshot and the group's metrics (it holds the
    ratings topic's partition 0)."""
    assigned: list[str]
    events_held: int
    """Events whose learning this worker's model holds: its own and the group's updates."""
    events_learned_here: int
    """Events learned by this worker (before its restarts too), not by one whose checkpoint
    it started from."""
    pending_events: int
    """Events learned here and in no update yet (lost if this worker dies: relearned)."""
    updates_published: int
    updates_applied: int
    updates_unreadable: int
    staleness_s: list[float]
    """Publication to application of the updates applied since the last status."""
    dropped_messages: int
    """Messages of partitions no longer this worker's (their new owner learns them)."""
    bases_published: int = 0
    """Refits of the group's model this worker published (as its leader)."""
    bases_adopted: int = 0
    events_relearned: int = 0
    """Events of this worker's users learned again in a refit it adopted."""
    aligned_s: float = 0.0
    """Seconds this worker waited for the group to catch up in event time."""


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
    retrain_running: bool
    last_learned_at: float | None
    checkpoint: CheckpointStatus = field(default_factory=CheckpointStatus)
    live: LiveFigures | None = None
    """The latest published prequential figures."""
    dead_letters_by_code: dict[str, int] = field(default_factory=dict)
    """Dead letters by kind of defect, those counted before a restart included."""
    restored_from: str | None = None
    """The checkpoint restored at start (None: none)."""
    quarantined: int = 0
    """Unreadable checkpoints moved aside at start."""
    group: GroupStatus | None = None
    """This worker's part in its group, when it scales out."""
    steps_skipped: int = 0
    """Micro-batches whose loss was not finite: their steps were not applied."""


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
        trainer = settings.trainer
        self.store = CheckpointStore(trainer.checkpoint_path, trainer.checkpoint_keep)
        self.dead_letters_by_code: Counter[str] = Counter()
        self.restored: Restored | None = None
        self._checkpoint = CheckpointStatus()
        self.replica: Replica | None = None
        """Set when this worker is one of a group's (:mod:`services.trainer.group`): the
        group's positions decide what was learned."""
        learner = self.processor.learner
        log.info(
            "learning on %s with %d torch threads",
            learner.device,
            learner.threads,
            extra={"device": str(learner.device), "threads": learner.threads},
        )

    # ---------------------------------------------------------------------- restore

    def restore(self) -> bool:
        """Load the newest readable checkpoint if there is one; True if one was loaded.

        Unreadable checkpoints are moved aside (:meth:`CheckpointStore.quarantine`) and the
        next newest is tried: the positions restored are that checkpoint's, so the trainer
        resumes Kafka from them and relearns whatever came after (nothing is lost). With none
        readable, the model starts empty and every partition is read from its beginning.
        """
        path = self.settings.trainer.checkpoint_path
        restored = self.restored = self.store.restore()
        self._checkpoint = CheckpointStatus(sequence=self.store.sequence)
        if restored.state is None:
            if restored.fell_back:
                log.warning(
                    "no readable checkpoint at %s (%d moved aside): starting from an empty "
                    "model, every partition read again from its beginning",
                    path,
                    len(restored.quarantined),
                    extra={"checkpoint": str(path), "quarantined": len(restored.quarantined)},
                )
            else:
                log.info("no checkpoint at %s: starting from an empty model", path)
            return False
        state = restored.state
        restore_processor(self.processor, state)
        self.positions = {key: int(value) for key, value in state["positions"].items()}
        codes = state["extra"].get("dead_letters_by_code", {})
        self.dead_letters_by_code = Counter({str(k): int(v) for k, v in codes.items()})
        learner = self.processor.learner
        log.log(
            logging.WARNING if restored.fell_back else logging.INFO,
            "restored checkpoint %s%s: %d events learned, model version %d, sequence %d, "
            "positions %s",
            restored.path,
            f" (the {len(restored.quarantined)} newer unreadable)" if restored.fell_back else "",
            learner.events_learned,
            learner.version,
            restored.sequence,
            self.positions,
            extra={
                "checkpoint": str(restored.path),
                "events_learned": learner.events_learned,
                "model_version": learner.version,
                "sequence": restored.sequence,
                "positions": dict(self.positions),
                "quarantined": len(restored.quarantined),
            },
        )
        return True

    # ----------------------------------------------------------------------- learning

    def already_learned(self, message: Message) -> bool:
        if self.replica is not None:
            return message.offset < self.replica.position(message.source)
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
        if self.replica is not None:
            # The batch's own ends (messages come in each partition's order).
            self.replica.record(result.user_ids, {m.source: m.offset + 1 for m in chosen})
        self.learned_since_checkpoint += result.learned
        self.dead_letters_by_code.update(letter.code for letter in result.dead_letters)
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

    def save_checkpoint(self, extra: dict[str, Any] | None = None) -> None:
        """Write a checkpoint of everything learned so far (with ``extra``, plain values);
        raises what the write raised (the failure is counted, and the checkpoint on disk stays
        the previous one)."""
        started = time.perf_counter()
        try:
            self.store.save(
                self.processor,
                self.positions,
                {"dead_letters_by_code": dict(self.dead_letters_by_code), **(extra or {})},
            )
        except Exception as exc:
            previous = self._checkpoint
            self._checkpoint = CheckpointStatus(
                previous.written_at,
                previous.seconds,
                previous.written,
                previous.failures + 1,
                previous.failing_since or time.time(),
                f"{type(exc).__name__}: {exc}",
                previous.sequence,
            )
            raise
        seconds = time.perf_counter() - started
        self.learned_since_checkpoint = 0
        self.last_checkpoint = time.monotonic()
        self._checkpoint = CheckpointStatus(
            time.time(),
            seconds,
            self._checkpoint.written + 1,
            self._checkpoint.failures,
            sequence=self.store.sequence,
        )
        log.info(
            "checkpoint %d written in %.2f s: %d events learned",
            self.store.sequence,
            seconds,
            self.processor.learner.events_learned,
            extra={
                "seconds": seconds,
                "events_learned": self.processor.learner.events_learned,
                "sequence": self.store.sequence,
            },
        )

    # ------------------------------------------------------------------------- status

    def reported_positions(self) -> dict[str, int]:
        """Per partition, the first offset not learned: by this worker, or (one of a group)
        by the group as far as this worker knows."""
        replica = self.replica
        if replica is None:
            return dict(self.positions)
        sources = set(replica.positions) | set(replica.learned_positions)
        return {source: replica.position(source) for source in sorted(sources)}

    def status(self) -> CoreStatus:
        learner = self.processor.learner
        report = self.processor.latest_report
        return CoreStatus(
            pid=os.getpid(),
            started_at=self.started_at,
            events_learned=learner.events_learned,
            events_evaluated=self.processor.evaluator.events_seen,
            positions=self.reported_positions(),
            dead_letters=self.processor.dead_letters,
            model_version=learner.version,
            retrains_completed=learner.retrains_completed,
            retrain_running=learner.retrain_running,
            last_learned_at=self.last_learned_at,
            checkpoint=self._checkpoint,
            live=None if report is None else report.live(),
            dead_letters_by_code=dict(self.dead_letters_by_code),
            restored_from=(
                None
                if self.restored is None or self.restored.path is None
                else str(self.restored.path)
            ),
            quarantined=0 if self.restored is None else len(self.restored.quarantined),
            steps_skipped=learner.steps_skipped,
        )

    def close(self) -> None:
        self.processor.learner.close()
