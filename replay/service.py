"""The replay service: a dataset's ratings, in timestamp order, into a Kafka topic.

Events go to their user's partition (Kafka's murmur2 of the user id), so one user's events keep
their order in one partition, packed into envelopes of many events per message (see
:mod:`recsys_stream.events.envelope`), and carry an ``event_id`` of ``<dataset>:<index>`` (the
position in stream order). The producer is
idempotent, batches and compresses. Pacing is by event time (``speed``: event-time seconds per
wall second), by rate (events per second) or none (``max_speed``).

Resuming sends every event exactly once. A state file records the contiguous prefix of
acknowledged events and, per partition, the offset after the last acknowledged event of that
prefix. Events past the prefix may have been written too (acknowledgements arrive out of order
across partitions); because each partition holds its events in index order, reading each
partition from the recorded offset to its end tells exactly which of them were written, and
those are skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from recsys_stream.events import (
    ENVELOPE_OVERHEAD,
    EventValidationError,
    check_bounds,
    decode_message,
    encode_rows,
    join_envelope,
)
from recsys_stream.files import atomic_write
from recsys_stream.settings import KafkaSettings, ReplaySettings, Settings
from services.kafka_security import kafka_python_options
from services.topics import BrokerUnavailableError, ensure_topics, partition_of

log = logging.getLogger(__name__)


_CHUNK = 8192
"""Events prepared at a time; the producer is flushed and the state saved after each chunk."""
_SETTLE_EVERY_S = 1.0
_CLOSE_TIMEOUT_S = 10.0
"""Longest wait for the producer to close once everything is settled."""
_PACING_STEP_S = 0.005
"""A paced replay sends an event as soon as it is due within this: it sleeps once per step,
not once per event (a sleep per event cost 40 µs of CPU at 10,000 events/s, 40% of a core);
events wait in envelopes for ``envelope_linger_ms`` (20 ms) anyway."""


class _StopRequestedError(Exception):
    """Raised inside the send loop when a stop is requested or the stop time is reached."""


class DeliveryError(RuntimeError):
    """The broker did not take an event (after the producer's retries)."""


@dataclass(frozen=True)
class ReplayConfig:
    """What to send where (the settings' Kafka and replay sections), how fast, and from where
    to where (this run's own choices)."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    producer: ReplaySettings = field(default_factory=ReplaySettings)
    speed: float | None = None
    """Event-time seconds per wall-clock second (3600: an hour of ratings per second)."""
    rate: float | None = None
    """Events per wall-clock second."""
    start_index: int = 0
    stop_index: int | None = None
    start_time: float | None = None
    """Skip events before this event time (Unix seconds)."""
    stop_time: float | None = None
    """Stop before events at or after this event time."""
    state_file: Path | None = None
    """Where progress is recorded (None: nowhere, and ``resume`` has nothing to read)."""
    resume: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, **run: Any) -> ReplayConfig:
        """The settings' Kafka and replay sections, with ``run``'s own fields."""
        return cls(kafka=settings.kafka, producer=settings.replay, **run)

    @property
    def topic(self) -> str:
        return self.kafka.topic

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka.bootstrap_servers

    @property
    def connect_timeout_s(self) -> float:
        return self.kafka.connect_timeout_s

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise ValueError("choose one of speed and rate (or neither for maximum speed)")
        for name in ("speed", "rate"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive")


@dataclass
class ReplaySummary:
    """What a replay did."""

    sent: int = 0
    acknowledged: int = 0
    skipped_bad_rows: int = 0
    skipped_already_sent: int = 0
    failed: int = 0
    messages: int = 0
    """Kafka messages the events went in (envelopes hold many)."""
    next_index: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    bad_row_reasons: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def ensure_topic(config: ReplayConfig) -> int:
    """Create the topic (and its dead-letter topic) when missing; returns its partitions."""
    kafka = config.kafka
    return ensure_topics(kafka, [kafka.topic, kafka.dead_letter_topic])[kafka.topic]


class Replayer:
    """Sends a ratings frame (in stream order) to Kafka as :class:`RatingEvent` messages."""

    def __init__(self, config: ReplayConfig, dataset_name: str) -> None:
        self.config = config
        self.dataset_name = dataset_name
        self._stop = threading.Event()

    def stop(self) -> None:
        """Ask a running replay to stop after flushing (thread-safe)."""
        self._stop.set()

    # ------------------------------------------------------------------ state file

    def _load_state(self) -> dict[str, Any] | None:
        path = self.config.state_file
        if not self.config.resume or path is None or not path.exists():
            return None
        state: dict[str, Any] = orjson.loads(path.read_bytes())
        if state.get("dataset") != self.dataset_name or state.get("topic") != self.config.topic:
            raise ValueError(
                f"{path} records a replay of {state.get('dataset')} into {state.get('topic')}, "
                f"not of {self.dataset_name} into {self.config.topic}"
            )
        return state

    def _save_state(self, next_index: int, scan_from: dict[int, int]) -> None:
        path = self.config.state_file
        if path is None:
            return
        state = {
            "dataset": self.dataset_name,
            "topic": self.config.topic,
            "next_index": next_index,
            "scan_from": {str(p): o for p, o in scan_from.items()},
            "updated_at": time.time(),
        }
        atomic_write(path, orjson.dumps(state))

    def _already_written(self, scan_from: dict[int, int]) -> dict[int, int]:
        """Per partition, the highest index of this dataset written from ``scan_from`` on."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers,
            enable_auto_commit=False,
            consumer_timeout_ms=int(self.config.connect_timeout_s * 1000),
            **kafka_python_options(self.config.kafka),
        )
        highest: dict[int, int] = {}
        prefix = f"{self.dataset_name}:"
        try:
            partitions = [TopicPartition(self.config.topic, p) for p in scan_from]
            consumer.assign(partitions)
            ends = consumer.end_offsets(partitions)
            for tp in partitions:
                consumer.seek(tp, scan_from[tp.partition])
            remaining = {tp for tp in partitions if ends[tp] > scan_from[tp.partition]}
            deadline = time.monotonic() + 60
            while remaining and time.monotonic() < deadline:
                for tp, records in consumer.poll(timeout_ms=500).items():
                    for record in records:
                        for event in decode_message(record.value).events:
                            event_id = event.event_id or ""
                            if event_id.startswith(prefix):
                                index = int(event_id[len(prefix) :])
                                highest[tp.partition] = max(highest.get(tp.partition, -1), index)
                        if record.offset + 1 >= ends[tp]:
                            remaining.discard(tp)
            if remaining:
                raise BrokerUnavailableError("could not read the topic's tail to resume")
        finally:
            consumer.close()
        return highest

    # ------------------------------------------------------------------------ replay

    def run(
        self,
        ratings: pd.DataFrame,
        on_progress: Callable[[int, float], None] | None = None,
    ) -> ReplaySummary:
        """Send the selected events; returns what was sent (also when stopped or interrupted).

        Events are packed per partition into envelopes (at most ``kafka.envelope_max_events``
        and ``kafka.envelope_max_bytes`` each; one event per message when the first is 1).
        Sending runs in chunks: between two chunks every envelope is sent, the producer is
        flushed, every send is checked, and the state file records how far the acknowledged
        prefix goes.
        """
        config = self.config
        partitions = ensure_topic(config)
        state = self._load_state()
        start = config.start_index
        already: dict[int, int] = {}
        if state is not None:
            start = max(start, int(state["next_index"]))
            scan_from = {int(p): int(o) for p, o in state["scan_from"].items()}
            scan_from.update({p: 0 for p in range(partitions) if p not in scan_from})
            already = self._already_written(scan_from)
        else:
            scan_from = self._end_offsets(partitions)
        summary = ReplaySummary(next_index=start)
        producer = self._producer()
        outbox = _Outbox(producer, config)
        stop = len(ratings) if config.stop_index is None else min(config.stop_index, len(ratings))
        first_time = float(ratings["timestamp"].iloc[start]) if start < stop else 0.0
        partition_of_user: dict[int, int] = {}
        started = time.monotonic()
        next_index = start  # every event before it is settled (sent and acknowledged, or skipped)
        last_settled = started
        try:
            for chunk_start in range(start, stop, _CHUNK):
                chunk_stop = min(chunk_start + _CHUNK, stop)
                for index, user, timestamp, payload in self._prepare(
                    ratings, chunk_start, chunk_stop, summary
                ):
                    if self._stop.is_set() or (
                        config.stop_time is not None and timestamp >= config.stop_time
                    ):
                        raise _StopRequestedError
                    partition = partition_of_user.get(user)
                    if partition is None:
                        partition = partition_of(str(user).encode(), partitions)
                        partition_of_user[user] = partition
                    if index <= already.get(partition, -1):
                        summary.skipped_already_sent += 1
                        continue
                    self._wait_until_due(outbox, timestamp - first_time, summary.sent, started)
                    outbox.add(partition, index, user, payload)
                    summary.sent += 1
                    if on_progress is not None and summary.sent % 256 == 0:
                        on_progress(summary.sent, timestamp)
                    if time.monotonic() - last_settled >= _SETTLE_EVERY_S:
                        # A slow (paced) replay records its progress at least every second.
                        next_index = self._settle_and_save(outbox, scan_from, summary, index + 1)
                        last_settled = time.monotonic()
                next_index = self._settle_and_save(outbox, scan_from, summary, chunk_stop)
                last_settled = time.monotonic()
        except (_StopRequestedError, KeyboardInterrupt):
            summary.interrupted = True
            outbox.send_all()  # what was buffered counts as sent: settle it with the rest
            last_sent = outbox.last_index + 1 if outbox.last_index is not None else next_index
            failed = self._settle(outbox, scan_from, summary)
            next_index = max(next_index, last_sent) if failed is None else failed
            self._save_state(next_index, scan_from)
        finally:
            # Everything was flushed and settled above: closing has nothing left to wait for,
            # and must not hang a stopping replay on a broker that went away.
            producer.close(timeout=_CLOSE_TIMEOUT_S)
        summary.seconds = time.monotonic() - started
        summary.next_index = next_index
        summary.messages = outbox.messages
        if on_progress is not None:
            on_progress(summary.sent, 0.0)
        return summary

    def _settle_and_save(
        self,
        outbox: _Outbox,
        scan_from: dict[int, int],
        summary: ReplaySummary,
        settled_until: int,
    ) -> int:
        """Send and settle everything; record that every event before ``settled_until`` is
        done (or, on a failure, stop there)."""
        failed = self._settle(outbox, scan_from, summary)
        next_index = settled_until if failed is None else failed
        self._save_state(next_index, scan_from)
        if failed is not None:
            raise DeliveryError(f"event {failed} could not be delivered; resume to retry from it")
        return next_index

    def _settle(
        self, outbox: _Outbox, scan_from: dict[int, int], summary: ReplaySummary
    ) -> int | None:
        """Send what is buffered, flush, check every send and advance ``scan_from``; the first
        index of the first message that failed."""
        outbox.send_all()
        outbox.producer.flush()
        for first, count, future in outbox.pending:
            if future.failed():
                summary.failed += count
                log.error("events from %d were not delivered: %s", first, future.exception)
                return first
            metadata = future.value
            scan_from[metadata.partition] = metadata.offset + 1
            summary.acknowledged += count
        outbox.pending.clear()
        return None

    def _prepare(
        self, ratings: pd.DataFrame, start: int, stop: int, summary: ReplaySummary
    ) -> list[tuple[int, int, float, bytes]]:
        """(index, user, event time, encoded event) of the valid rows of a chunk."""
        config = self.config
        part = ratings.iloc[start:stop]
        timestamps = part["timestamp"].to_numpy()
        indices = np.arange(start, stop)
        if config.start_time is not None:
            # NaN is not before anything: it is kept here, and refused as a bad row below.
            kept = ~(timestamps < config.start_time)
            part, timestamps, indices = part[kept], timestamps[kept], indices[kept]
        users = part["user_id"].to_numpy()
        encoded = encode_rows(
            users,
            part["item_id"].to_numpy(),
            part["rating"].to_numpy(),
            timestamps,
            event_ids=[f"{self.dataset_name}:{index}" for index in indices.tolist()],
            source="replay",
        )
        rows = []
        for index, user, timestamp, payload in zip(
            indices.tolist(), users.tolist(), timestamps.tolist(), encoded, strict=True
        ):
            if isinstance(payload, EventValidationError):
                summary.skipped_bad_rows += 1
                reason = str(payload)
                summary.bad_row_reasons[reason] = summary.bad_row_reasons.get(reason, 0) + 1
                log.warning("row %d skipped: %s", index, payload)
                continue
            rows.append((index, user, float(timestamp), payload))
        return rows

    def _producer(self) -> KafkaProducer:
        config = self.config
        try:
            return KafkaProducer(
                bootstrap_servers=config.bootstrap_servers,
                client_id="recsys-replay",
                enable_idempotence=True,
                acks="all",
                linger_ms=config.producer.linger_ms,
                batch_size=config.producer.batch_bytes,
                compression_type=config.producer.compression,
                max_in_flight_requests_per_connection=5,
                request_timeout_ms=int(config.connect_timeout_s * 1000),
                bootstrap_timeout_ms=int(config.connect_timeout_s * 1000),
                max_block_ms=int(config.connect_timeout_s * 1000),
                **kafka_python_options(config.kafka),
            )
        except KafkaError as exc:
            raise BrokerUnavailableError(
                f"cannot reach Kafka at {config.bootstrap_servers} within "
                f"{config.connect_timeout_s:.0f} s ({exc})"
            ) from None

    def _end_offsets(self, partitions: int) -> dict[int, int]:
        consumer = KafkaConsumer(
            bootstrap_servers=self.config.bootstrap_servers,
            **kafka_python_options(self.config.kafka),
        )
        try:
            tps = [TopicPartition(self.config.topic, p) for p in range(partitions)]
            return {tp.partition: offset for tp, offset in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def _wait_until_due(
        self, outbox: _Outbox, event_seconds: float, sent: int, started: float
    ) -> None:
        """Wait until this event is due (by rate, or by event time at the given speed),
        sending the envelopes whose first event would otherwise wait past its linger."""
        config = self.config
        if config.rate is not None:
            due = started + sent / config.rate
        elif config.speed is not None:
            due = started + event_seconds / config.speed
        else:
            return
        while (now := time.monotonic()) < due - _PACING_STEP_S and not self._stop.is_set():
            linger_ends = outbox.linger_ends()
            if linger_ends is not None and linger_ends <= due:
                self._stop.wait(max(0.0, linger_ends - now))
                outbox.send_all()
            else:
                self._stop.wait(due - now)


class _Outbox:
    """Encoded events waiting per partition, sent as envelopes; and the sends not settled."""

    def __init__(self, producer: KafkaProducer, config: ReplayConfig) -> None:
        self.producer = producer
        self.topic = config.topic
        self.max_events = config.kafka.envelope_max_events
        self.max_bytes = config.kafka.envelope_max_bytes
        self.linger_s = config.producer.envelope_linger_ms / 1000
        check_bounds(self.max_events, self.max_bytes)
        self._buffers: dict[int, list[tuple[int, int, bytes]]] = {}
        self._sizes: dict[int, int] = {}
        self._since: dict[int, tuple[float, float]] = {}
        """Per partition, when its buffer's first event came: (monotonic, wall clock)."""
        self._oldest: float | None = None
        """The earliest of those (monotonic): asked after every event, so kept, not searched."""
        self.pending: list[tuple[int, int, Any]] = []
        """``(first index, events, future)`` of each message sent and not yet settled."""
        self.last_index: int | None = None
        self.messages = 0

    def add(self, partition: int, index: int, user: int, encoded: bytes) -> None:
        buffer = self._buffers.setdefault(partition, [])
        size = self._sizes.get(partition, ENVELOPE_OVERHEAD)
        if buffer and (len(buffer) >= self.max_events or size + len(encoded) + 1 > self.max_bytes):
            self.send(partition)
            buffer, size = self._buffers.setdefault(partition, []), ENVELOPE_OVERHEAD
        if not buffer:
            self._since[partition] = (time.monotonic(), time.time())
            # Later buffers start later: the oldest changes only when there was none.
            if self._oldest is None:
                self._oldest = self._since[partition][0]
        buffer.append((index, user, encoded))
        self._sizes[partition] = size + len(encoded) + 1
        if len(buffer) >= self.max_events:
            self.send(partition)
        elif (ends := self.linger_ends()) is not None and time.monotonic() >= ends:
            self.send_all()

    def linger_ends(self) -> float | None:
        """When the longest-waiting buffered event has waited its linger (monotonic)."""
        return None if self._oldest is None else self._oldest + self.linger_s

    def send(self, partition: int) -> None:
        buffer = self._buffers.pop(partition, [])
        self._sizes.pop(partition, None)
        if not buffer:
            return
        events = [encoded for _, _, encoded in buffer]
        value = events[0] if len(events) == 1 else join_envelope(events)
        future = self.producer.send(
            self.topic,
            value=value,
            key=str(buffer[0][1]).encode(),  # the (first) event's user, as a single event has
            partition=partition,
            # The message's time is when its first event was ready: freshness counts the wait.
            timestamp_ms=int(self._since.pop(partition)[1] * 1000),
        )
        self._oldest = min((first for first, _ in self._since.values()), default=None)
        self.pending.append((buffer[0][0], len(buffer), future))
        self.last_index = max(self.last_index or -1, buffer[-1][0])
        self.messages += 1

    def send_all(self) -> None:
        for partition in list(self._buffers):
            self.send(partition)
