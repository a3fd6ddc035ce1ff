"""Several trainer workers, one model: the learner process's side of scaling out.

Workers of one app id split the ratings topic's partitions (Kafka's consumer group, Faust's
assignor), so each learns the users of its partitions. Each holds the whole model as a
:class:`~recsys_stream.stream.Replica` and they keep it whole through the **updates topic**
(one partition: every worker reads every update in the same order):

- every ``exchange_every_events`` events learned (or ``exchange_every_s`` seconds), a worker
  publishes a :class:`~recsys_stream.stream.ModelUpdate`: its item-side deltas (summed by the
  others), the state of the users it learned, its prequential records, and its **positions**
  (per partition, the first offset whose learning is in no update);
- between two batches it applies what the others published;
- when it is given partitions it first reads the updates topic to its end, so that it holds
  everything the group learned of them, and learns each from the group's position on; when
  partitions are taken from it, it publishes an update at once (the rebalance waits for it);
- a checkpoint is written only after an update: it holds no learning that is in no update, and
  its offset in the updates topic. A restarted worker reads the updates topic from there (its
  own updates after the checkpoint are applied like anyone's), so each event's learning is in
  the model once, whichever worker learned it and whoever died.

A worker that dies loses only what it learned since its last update: nobody applied it, and
the partition's next owner learns those events again from the published position.

What is durable is what the updates topic holds: the offsets the trainer commits are the
positions of updates the brokers acknowledged, which a new owner always reads before it learns.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from recsys_stream.learner import ModelBase
from recsys_stream.settings import KafkaSettings, Settings
from recsys_stream.stream import CheckpointError, ModelUpdate, Replica, load_checkpoint
from recsys_stream.stream.checkpoint import restore_processor
from services.kafka_security import kafka_python_options
from services.trainer.base_parts import BaseAssembly, split
from services.trainer.worker import GroupStatus, Handled, Message, TrainerCore

log = logging.getLogger(__name__)

SEND_TIMEOUT_S: Final = 30.0
"""How long publishing one update may take before the worker counts it as failed."""
CATCH_UP_TIMEOUT_S: Final = 120.0
"""How long reading the updates topic to its end may take."""
PART_OVERHEAD_BYTES: Final = 64 * 1024
"""Room left in a message beside a refit's part (its header, the record's)."""
BASE_KEY: Final = "base:"
"""The key of a refit's parts (then their sender): every worker adopts it, its sender too."""


class GroupError(RuntimeError):
    """The worker cannot join the group's model (the updates it needs are gone)."""


def scale_out_settings(settings: Settings) -> Settings:
    """The settings a worker of a group runs with: its own checkpoint folder and no
    baselines (each worker would see only its partitions' events, so theirs would not be the
    stream's figures). Full retrains keep their schedule: the leader's (:class:`GroupMember`)."""
    stream = settings.stream
    if stream.baselines:
        log.warning("scaling out: the baselines are off (a worker sees a part of the stream)")
    trainer = settings.trainer.model_copy(
        update={"checkpoint_path": worker_checkpoint(settings, worker_name(settings))}
    )
    return settings.model_copy(
        update={"stream": dataclasses.replace(stream, baselines=False), "trainer": trainer}
    )


def worker_name(settings: Settings) -> str:
    return settings.trainer.worker_name or socket.gethostname()


def worker_checkpoint(settings: Settings, name: str) -> Path:
    """Where worker ``name`` keeps its checkpoints: beside the other workers', so that a new
    worker can start from theirs."""
    path = settings.trainer.checkpoint_path
    return path.parent / "workers" / name / path.name


def _modified(path: Path) -> float | None:
    """When ``path`` was last written (None: it vanished, a writer replacing it)."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


@dataclass(frozen=True)
class Entry:
    """One message of the updates topic."""

    sender: str
    """The record's key: an update's origin, or ``base:<origin>`` for a part of a refit."""
    value: bytes
    published_at: float
    offset: int


def _entry(record: Any) -> Entry:
    key = record.key.decode(errors="replace") if record.key else ""
    return Entry(key, record.value, record.timestamp / 1000, record.offset)


class UpdateLog:
    """The updates topic, read from a given offset and written with acknowledgement."""

    def __init__(self, kafka: KafkaSettings, start: int) -> None:
        self.topic = kafka.updates_topic
        self._partition = TopicPartition(self.topic, 0)
        options = kafka_python_options(kafka)
        self._producer = KafkaProducer(
            bootstrap_servers=kafka.bootstrap_servers,
            acks="all",
            linger_ms=0,
            max_request_size=kafka.updates_max_bytes,
            client_id="recsys-trainer-updates",
            **options,
        )
        self._consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_bytes=kafka.updates_max_bytes,
            max_partition_fetch_bytes=kafka.updates_max_bytes,
            client_id="recsys-trainer-updates",
            **options,
        )
        self._consumer.assign([self._partition])
        beginning = self._consumer.beginning_offsets([self._partition])[self._partition]
        if start < beginning:
            raise GroupError(
                f"the updates topic {self.topic} begins at offset {beginning} and this worker "
                f"needs the updates from {start} on: they were deleted (retention "
                "kafka.updates_retention_ms); start it from a newer checkpoint of the group "
                "(a checkpoint directory shared by the workers) or a longer retention"
            )
        self._consumer.seek(self._partition, start)

    @property
    def position(self) -> int:
        """The offset of the next update to read."""
        offset: int = self._consumer.position(self._partition)
        return offset

    def end(self) -> int:
        end: int = self._consumer.end_offsets([self._partition])[self._partition]
        return end

    def send(self, data: bytes, key: str) -> Any:
        """Start writing one update; the future's ``get`` waits until the brokers hold it."""
        return self._producer.send(self.topic, value=data, key=key.encode())

    def wait(self, timeout_s: float) -> list[Entry]:
        """The updates from :attr:`position` on that arrive within ``timeout_s``."""
        found: list[Entry] = []
        for records in self._consumer.poll(timeout_ms=max(0, int(timeout_s * 1000))).values():
            found.extend(_entry(r) for r in records)
        return found

    def read(self, until: int | None) -> list[Entry]:
        """The updates from :attr:`position` on, with their sender (the record's key) and
        publication time: to ``until`` (waiting for them), or (None) what a fetch brings now."""
        found: list[Entry] = []
        if until is None:
            for records in self._consumer.poll(timeout_ms=0).values():
                found.extend(_entry(r) for r in records)
            return found
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_S
        while self.position < until:
            if time.monotonic() > deadline:
                raise GroupError(
                    f"could not read {self.topic} to offset {until} in {CATCH_UP_TIMEOUT_S:.0f} s"
                )
            for records in self._consumer.poll(timeout_ms=500).values():
                found.extend(_entry(r) for r in records)
        return found

    def close(self) -> None:
        self._producer.close(timeout=10)
        self._consumer.close()


class GroupMember:
    """A :class:`TrainerCore` as one worker of a group (see the module's docstring)."""

    def __init__(self, core: TrainerCore, settings: Settings) -> None:
        self.core = core
        self.settings = settings
        self.name = worker_name(settings)
        self.replica = Replica(core.processor)
        core.replica = self.replica
        self.assigned: set[str] = set()
        self._log: UpdateLog | None = None
        self._last_publish = time.monotonic()
        self._unsent: ModelUpdate | None = None
        self._adopted_events = 0
        """Events learned by the worker whose checkpoint this one started from."""
        self._sending: tuple[ModelUpdate, Any] | None = None
        self._acknowledged: dict[str, int] = {}
        """Per partition, the position the brokers hold (the group's, as far as known)."""
        self._published = 0
        self._applied = 0
        self._unreadable = 0
        self._dropped = 0
        self._per_message = 1.0
        """Events per message lately (envelopes hold many): the size of a chunk to learn."""
        self._staleness: deque[float] = deque(maxlen=10_000)
        self._event_times: dict[str, tuple[float, float]] = {}
        """Per other worker (origin): the event time its latest update reached, and when it
        was published (wall clock)."""
        self._event_time: float | None = None
        """The event time this worker's latest update reached."""
        self._aligned_s = 0.0
        self._assembly = BaseAssembly()
        self._bases_published = 0
        self._bases_adopted = 0
        self._last_base_at = time.monotonic()
        core.processor.lead(False)

    # ------------------------------------------------------------------------ start

    def restore(self) -> None:
        """This worker's newest checkpoint, else (none, or one older than what the updates
        topic still holds) the newest of another worker's, else none; then the updates topic
        from the checkpoint's offset to its end."""
        kafka = self.settings.kafka
        if self.core.restore():
            restored = self.core.restored
            assert restored is not None
            assert restored.state is not None
            start = self._load(restored.state)
            try:
                self._log = UpdateLog(kafka, start)
            except GroupError as exc:
                log.warning("%s; trying the other workers' checkpoints", exc)
                adopted = self._adopt()
                if adopted is None:
                    raise
                self._log = UpdateLog(kafka, adopted)
        else:
            self._log = UpdateLog(kafka, self._adopt() or 0)
        start = self._log.position
        # What the checkpoint holds was on the brokers before it was written.
        self._acknowledged = dict(self.replica.positions)
        applied = self.catch_up()
        log.info(
            "worker %s joined the group's model at update %d: %d updates applied, %d events held",
            self.name,
            start,
            applied,
            self.replica.events_held,
            extra={"worker": self.name, "updates_applied": applied},
        )

    def _load(self, state: dict[str, Any]) -> int:
        group = state["extra"].get("group")
        if group is None:
            raise GroupError(
                "the checkpoint restored was written by a trainer that did not scale out: "
                "start the group from an empty checkpoint directory"
            )
        self.replica.load_state_dict(group["replica"])
        self._adopted_events = int(group.get("adopted_events", 0))
        offset: int = int(group["updates_offset"])
        return offset

    def _adopt(self) -> int | None:
        """Start from the newest readable checkpoint of another worker (read only): a copy
        of the group's model as that worker held it, continued as a new origin."""
        mine = self.settings.trainer.checkpoint_path  # this worker's (scale_out_settings)
        root = mine.parent.parent
        others = sorted(
            (
                (modified, candidate)
                for candidate in root.glob(f"*/{mine.name}")
                if candidate.parent != mine.parent
                and (modified := _modified(candidate)) is not None
            ),
            reverse=True,
        )
        for _, candidate in others:
            try:
                state = load_checkpoint(candidate)
            except (CheckpointError, OSError) as exc:
                log.warning("cannot start from %s: %s", candidate, exc)
                continue
            restore_processor(self.core.processor, state)
            offset = self._load(state)
            # What that worker learned is in the model, but was not learned here; its users
            # are still its own (or their partitions' next owners') until this one learns them.
            self._adopted_events = self.core.processor.learner.events_learned
            self.replica.release_users()
            log.info(
                "worker %s starts from the checkpoint of %s (update %d)",
                self.name,
                candidate.parent.name,
                offset,
                extra={"worker": self.name, "adopted": str(candidate)},
            )
            return offset
        return None

    # -------------------------------------------------------------------- exchanging

    @property
    def updates(self) -> UpdateLog:
        assert self._log is not None, "restore() first"
        return self._log

    def catch_up(self) -> int:
        """Apply every update published so far; how many were applied."""
        return self._apply_all(self.updates.read(until=self.updates.end()))

    def poll(self) -> int:
        """Apply the updates that have arrived, and take in the acknowledgement of this
        worker's own if it came (without waiting)."""
        self._settle(only_if_done=True)
        return self._apply_all(self.updates.read(until=None))

    def _apply_all(self, records: Iterable[Entry]) -> int:
        applied = 0
        now = time.time()
        for record in records:
            sender, data, published_at = record.sender, record.value, record.published_at
            if sender.startswith(BASE_KEY):
                self._base_part(record)
                continue
            self._assembly.sender_moved_on(f"{BASE_KEY}{sender}")
            if sender == self.replica.origin:
                continue  # this worker's own, read back: nothing to parse
            try:
                update = ModelUpdate.from_bytes(data)
            except ValueError as exc:
                # Only workers write here; bytes that are not an update are someone else's
                # mistake, and no worker's learning is in them.
                self._unreadable += 1
                log.error("skipped an unreadable message of the updates topic: %s", exc)
                continue
            if update.evaluation.last_timestamp is not None:
                self._event_times[update.origin] = (update.evaluation.last_timestamp, published_at)
            if self.replica.apply(update):
                applied += 1
                self._staleness.append(max(0.0, now - published_at))
                self._held(update.positions)
        self._applied += applied
        return applied

    def _base_part(self, record: Entry) -> None:
        try:
            whole = self._assembly.add(record.value, record.offset, record.sender)
            base = None if whole is None else ModelBase.from_bytes(whole)
        except ValueError as exc:
            self._unreadable += 1
            log.error("skipped an unreadable model base of the updates topic: %s", exc)
            return
        if base is not None:
            self._adopt_base(base)

    def _adopt_base(self, base: ModelBase) -> None:
        relearned = self.replica.events_relearned
        if self.replica.adopt(base):
            self._bases_adopted += 1
            self._last_base_at = time.monotonic()
            log.info(
                "worker %s serves model version %d (a refit on %d events); %d events of its "
                "users learned again in it",
                self.name,
                self.core.processor.learner.version,
                base.events,
                self.replica.events_relearned - relearned,
                extra={"worker": self.name, "model_version": self.core.processor.learner.version},
            )

    # ------------------------------------------------------------------------ refits

    def refit_due(self) -> bool:
        """The leader's schedule of full retrains (``learner.retrain``), counted in the
        group's events."""
        schedule = self.settings.learner.retrain
        replica = self.replica
        return (
            schedule.every_events is not None
            and replica.events_held - replica.events_at_base >= schedule.every_events
        ) or (
            schedule.every_seconds is not None
            and time.monotonic() - self._last_base_at >= schedule.every_seconds
        )

    def refit(self) -> None:
        """Publish a refit that finished (whoever leads now: it is the group's next model);
        the leader starts one when due."""
        learner = self.core.processor.learner
        base = self.replica.take_base()
        if base is not None:
            data = base.to_bytes()
            # The next one is due a whole period later (not before this one is adopted, nor
            # at once when this one could not be published).
            self.replica.events_at_base = self.replica.events_held
            self._last_base_at = time.monotonic()
            key = f"{BASE_KEY}{self.replica.origin}"
            part_bytes = min(
                self.settings.trainer.base_part_bytes,
                self.settings.kafka.updates_max_bytes - PART_OVERHEAD_BYTES,
            )
            try:
                # Back to back, each acknowledged before the next (the update in flight
                # first): a worker's parts are consecutive among its messages.
                self._settle()
                parts = split(data, base.id, part_bytes)
                for part in parts:
                    self.updates.send(part, key).get(timeout=SEND_TIMEOUT_S)
            except Exception as exc:
                log.error(
                    "publishing a refit (%d bytes) failed: %r; the group keeps its model",
                    len(data),
                    exc,
                )
                return
            self._bases_published += 1
            log.info(
                "worker %s published the group's refit on %d events (%d bytes in %d parts)",
                self.name,
                base.events,
                len(data),
                len(parts),
            )
        elif self.leader and not learner.retrain_running and self.refit_due():
            log.info("worker %s refits the group's model", self.name)
            self.replica.start_refit()

    def exchange_due(self) -> bool:
        """``exchange_every_events`` learned since the last update (to within half a
        message: envelopes hold many events), or ``exchange_every_s`` with anything."""
        trainer = self.settings.trainer
        pending = self.replica.pending
        return pending >= trainer.exchange_every_events - self._per_message / 2 or (
            pending > 0 and time.monotonic() - self._last_publish >= trainer.exchange_every_s
        )

    def publish(self, *, wait: bool = False) -> None:
        """Publish what was learned since the last update (if anything); with ``wait``, until
        the brokers hold it. One update is in flight at a time: the previous one is settled
        first (its acknowledgement has normally come while this worker learned). An update
        that could not be sent is sent again first next time (a copy that reached the
        brokers after all is applied once: updates carry their sender's sequence)."""
        self._settle()
        self._last_publish = time.monotonic()
        if self._unsent is None:
            if self.replica.pending == 0 and not self.replica.has_new_positions:
                return
            self._unsent = self.replica.take()
        update = self._unsent
        if update.evaluation.last_timestamp is not None:
            self._event_time = update.evaluation.last_timestamp
        self._sending = (update, self.updates.send(update.to_bytes(), update.origin))
        self._unsent = None
        if wait:
            self._settle()

    def _settle(self, *, only_if_done: bool = False) -> None:
        """Wait for the update in flight; it becomes unsent again if the brokers refused it."""
        if self._sending is None:
            return
        update, future = self._sending
        if only_if_done and not future.is_done:
            return
        self._sending = None
        try:
            future.get(timeout=SEND_TIMEOUT_S)
        except Exception:
            self._unsent = update
            raise
        self._published += 1
        self._held(update.positions)

    def _held(self, positions: dict[str, int]) -> None:
        """The brokers hold an update with these positions."""
        for source, offset in positions.items():
            self._acknowledged[source] = max(self._acknowledged.get(source, 0), offset)

    def checkpoint(self) -> None:
        """An update, then a checkpoint holding the replica and the updates topic's offset."""
        self.publish(wait=True)
        self.core.save_checkpoint(
            {
                "group": {
                    "replica": self.replica.state_dict(),
                    # An incomplete refit's parts are read again after a restart.
                    "updates_offset": min(
                        self.updates.position,
                        self._assembly.first_offset or self.updates.position,
                    ),
                    "adopted_events": self._adopted_events,
                }
            }
        )

    # -------------------------------------------------------------------- rebalances

    def assign(self, sources: Iterable[str]) -> None:
        """Partitions given to this worker: read the group's updates to the end first."""
        self.assigned |= set(sources)
        self.catch_up()
        self._lead(f"{self.settings.kafka.topic}/0" in self.assigned)
        log.info(
            "worker %s learns %s (positions %s)",
            self.name,
            sorted(self.assigned),
            {source: self.replica.position(source) for source in sorted(self.assigned)},
            extra={"worker": self.name, "assigned": sorted(self.assigned)},
        )

    def revoke(self, sources: Iterable[str]) -> None:
        """Partitions taken from this worker: publish what it learned of them now."""
        self.publish(wait=True)
        self.assigned -= set(sources)
        self._lead(f"{self.settings.kafka.topic}/0" in self.assigned)

    @property
    def leader(self) -> bool:
        """This worker publishes the model snapshot and the group's metrics."""
        return self.core.processor.publishes_model

    def _lead(self, leader: bool) -> None:
        if leader and not self.leader:
            log.info("worker %s publishes the model and the group's metrics", self.name)
        self.core.processor.lead(leader)

    # ----------------------------------------------------------------------- learning

    def handle(self, messages: list[Message], between: Callable[[], None]) -> Handled:
        """Learn the messages of this worker's partitions (those of a partition taken from it
        are its new owner's to learn), in chunks of about ``exchange_every_events`` events
        with ``between`` (the exchange) after each: however many messages queued up, no update
        waits for more than one chunk, and each holds the positions of what it learned."""
        owned = [message.source in self.assigned for message in messages]
        mine = [message for message, kept in zip(messages, owned, strict=True) if kept]
        self._dropped += len(messages) - len(mine)
        learned, letters, per_message = 0, [], []
        at = 0
        while at < len(mine):
            self._align()
            budget = self.settings.trainer.exchange_every_events - self.replica.pending
            size = max(1, round(budget / self._per_message))
            chunk = mine[at : at + size]
            handled = self.core.handle(chunk)
            learned += handled.learned
            letters.extend(handled.dead_letters)
            per_message.extend(handled.learned_per_message)
            if handled.events:
                self._per_message = max(1.0, handled.events / len(chunk))
            at += size
            between()
        counts = iter(per_message)
        return Handled(learned, letters, [next(counts) if kept else 0 for kept in owned])

    def _lead_over_group(self) -> float:
        """How far (event time) this worker's latest update is ahead of the slowest of the
        workers that published lately (a worker gone quiet, or with nothing to learn, does
        not hold the others back)."""
        if self._event_time is None:
            return 0.0
        # Publication times, not arrival: a worker reading old updates (a restart) does not
        # take them for the group's present.
        recent = time.time() - 3 * self.settings.trainer.exchange_every_s - 1.0
        behind = [at for at, published in self._event_times.values() if published >= recent]
        return self._event_time - min(behind) if behind else 0.0

    def _align(self) -> None:
        """Wait (reading the others' updates) while this worker is too far ahead of the
        group in event time: a backlog is learned in step, each worker's events meeting the
        others' learning of the same period, as in one trainer (watermark alignment)."""
        trainer = self.settings.trainer
        if self._lead_over_group() <= trainer.max_event_time_lead_s:
            return
        began = time.monotonic()
        deadline = began + trainer.align_wait_s
        while (
            self._lead_over_group() > trainer.max_event_time_lead_s and time.monotonic() < deadline
        ):
            self._apply_all(self.updates.wait(timeout_s=min(0.1, deadline - time.monotonic())))
        self._aligned_s += time.monotonic() - began

    # ------------------------------------------------------------------------ status

    def status(self) -> GroupStatus:
        staleness = list(self._staleness)
        self._staleness.clear()
        return GroupStatus(
            worker=self.name,
            leader=self.leader,
            assigned=sorted(self.assigned),
            events_held=self.replica.events_held,
            pending_events=self.replica.pending,
            events_learned_here=self.core.processor.learner.events_learned - self._adopted_events,
            updates_published=self._published,
            updates_applied=self._applied,
            updates_unreadable=self._unreadable,
            staleness_s=staleness,
            dropped_messages=self._dropped,
            bases_published=self._bases_published,
            bases_adopted=self._bases_adopted,
            events_relearned=self.replica.events_relearned,
            aligned_s=self._aligned_s,
        )

    def durable(self) -> dict[str, int]:
        """Positions the updates topic holds: safe to commit (a new owner reads them first)."""
        return dict(self._acknowledged)

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
