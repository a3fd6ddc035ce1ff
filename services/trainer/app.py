"""The Faust trainer: Kafka in, the online learner in the middle, results out.

One agent consumes the ratings topic in micro-batches (``noack_take``: Faust does not
acknowledge on its own), hands each batch to :class:`~services.trainer.worker.TrainerCore` on a
worker thread (so the event loop keeps heart-beating while the model learns), sends invalid
messages to the dead-letter topic with their reason, and acknowledges the batch's messages only
after a checkpoint that includes them is written. Run it with ``recsys-stream trainer``.

At start the trainer declares the ratings and dead-letter topics (with the configured
partitions) before it subscribes, so it may start before the replay, the API or any producer.
Its ``/metrics``, ``/healthz`` and ``/readyz`` are served by :mod:`services.trainer.http`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, cast

import faust
import numpy as np
import orjson

from recsys_stream.files import atomic_write
from recsys_stream.serving import InMemorySink, OutputSink
from recsys_stream.settings import Settings
from services.cache.redis_cache import RedisCache
from services.logs import logging_config
from services.topics import wait_for_topics
from services.trainer.http import Health, TrainerHttpServer
from services.trainer.telemetry import TrainerTelemetry
from services.trainer.worker import CoreStatus, Handled, Message, TrainerCore

log = logging.getLogger(__name__)

TICK_S: Final = 1.0
"""How often the event loop proves it is alive (and the metrics' state is refreshed)."""
STUCK_AFTER_S: Final = 30.0
"""A loop that has not ticked for this long is stuck: ``/healthz`` answers 503."""
STARTING_FOR_S: Final = 300.0
"""Before its first tick (restoring a checkpoint, joining the group) a trainer counts as alive
for this long."""


class TrainerService:
    """The Faust app around a :class:`TrainerCore`, with its telemetry and health."""

    def __init__(self, settings: Settings, sink: OutputSink | None = None) -> None:
        self.settings = settings
        if sink is None:
            trainer = settings.trainer
            sink = RedisCache(settings.redis) if trainer.sink == "redis" else InMemorySink()
        self.core = TrainerCore(settings, sink)
        self.core.restore()  # before consuming: the positions decide what is skipped
        self.telemetry = TrainerTelemetry()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learner")
        self._unacknowledged: list[Any] = []
        self._freshness: deque[float] = deque(maxlen=10_000)
        self._lag: dict[int, int] = {}
        self._created = time.monotonic()
        self._last_tick: float | None = None
        self._assigned = False
        self._status_written = 0.0
        self.app = self._build_app()
        self.telemetry.update(self.core.status())

    # ------------------------------------------------------------------------ health

    def health(self) -> Health:
        now = time.monotonic()
        if self._last_tick is None:
            alive = now - self._created < STARTING_FOR_S
        else:
            alive = now - self._last_tick < STUCK_AFTER_S
        ticking = self._last_tick is not None and now - self._last_tick < STUCK_AFTER_S
        return Health(
            alive=alive,
            checks={"restored": True, "partitions_assigned": self._assigned, "ticking": ticking},
        )

    # ----------------------------------------------------------------------- the app

    def _build_app(self) -> faust.App:
        settings = self.settings
        kafka, trainer = settings.kafka, settings.trainer
        datadir = trainer.data_dir / trainer.app_id
        datadir.mkdir(parents=True, exist_ok=True)
        app = faust.App(
            trainer.app_id,
            broker=[f"kafka://{server}" for server in kafka.bootstrap_servers.split(",")],
            value_serializer="raw",
            key_serializer="raw",
            store="memory://",
            datadir=str(datadir),
            web_enabled=False,
            topic_partitions=kafka.partitions,
            topic_replication_factor=kafka.replication_factor,
            consumer_auto_offset_reset="earliest",
            # Offsets of acknowledged messages only; acknowledged means checkpointed.
            broker_commit_interval=1.0,
            # A killed worker's partitions are handed over after this long, not after a minute.
            broker_session_timeout=10.0,
            broker_heartbeat_interval=2.0,
        )
        ratings = app.topic(kafka.topic, value_type=bytes, key_type=bytes)
        self._dead_letters = app.topic(kafka.dead_letter_topic, value_type=bytes, key_type=bytes)
        app.agent(ratings)(self._learn)
        app.timer(interval=TICK_S)(self._tick)
        # mode annotates handlers with a forward reference that mypy cannot resolve.
        app.on_partitions_assigned.connect(cast(Any, self._on_assigned))
        app.on_before_shutdown.connect(cast(Any, self._flush))
        return app

    async def _learn(self, stream: faust.StreamT[Any]) -> None:
        # noack_take (a Stream method, not on StreamT) yields the events themselves, whose
        # messages carry the offsets to acknowledge.
        events_of = cast(faust.Stream[Any], stream)
        take = self.settings.trainer.take_messages
        timeout = self.settings.trainer.batch_timeout_s
        loop = asyncio.get_running_loop()
        async for events in events_of.noack_take(take, timeout):
            messages = [
                Message(
                    event.message.topic,
                    event.message.partition,
                    event.message.offset,
                    event.value,
                    event.message.timestamp,
                )
                for event in events
            ]
            self._lag.update(_lag(self.app, events))
            self.core.processor.consumer_lag = sum(self._lag.values()) if self._lag else None
            handled = await loop.run_in_executor(self._executor, self.core.handle, messages)
            await self._send_dead_letters(handled)
            self._count(messages, handled)
            self._unacknowledged.extend(events)
            if self.core.checkpoint_due():
                await self._checkpoint()
            # Throttled while behind; written at once when caught up, so that whoever watches
            # the status sees the end of a burst without waiting for the timer.
            self._refresh(force=self.core.processor.consumer_lag == 0)

    async def _send_dead_letters(self, handled: Handled) -> None:
        for letter in handled.dead_letters:
            await self._dead_letters.send(
                value=letter.payload or b"",
                headers=[
                    ("reason", letter.reason.encode()),
                    ("code", letter.code.encode()),
                    ("source", letter.source.encode()),
                    *([("index", str(letter.index).encode())] if letter.index is not None else []),
                    ("failed_at", str(time.time()).encode()),
                ],
            )

    def _count(self, messages: Sequence[Message], handled: Handled) -> None:
        now = time.time()
        fresh = [
            now - message.timestamp
            for message, learned in zip(messages, handled.learned_per_message, strict=True)
            if message.timestamp is not None
            for _ in range(learned)
        ]
        self._freshness.extend(fresh)
        self.telemetry.batch(
            consumed=handled.events,
            dead_letters=[letter.code for letter in handled.dead_letters],
            freshness=fresh,
        )

    async def _checkpoint(self) -> None:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        await loop.run_in_executor(self._executor, self.core.save_checkpoint)
        self.telemetry.checkpoint_duration.observe(time.perf_counter() - started)
        for event in self._unacknowledged:
            event.ack()
        self._unacknowledged.clear()

    async def _tick(self) -> None:
        self._last_tick = time.monotonic()
        # A quiet topic still gets its tail checkpointed (and acknowledged).
        if self.core.checkpoint_due():
            await self._checkpoint()
        self._refresh(force=True)

    async def _on_assigned(self, _sender: Any, assigned: Any = (), *_: Any, **__: Any) -> None:
        self._assigned = True
        partitions = sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        log.info("partitions assigned: %s", partitions, extra={"partitions": partitions})

    async def _flush(self, _sender: Any, *_: Any, **__: Any) -> None:
        if self.core.learned_since_checkpoint:
            await self._checkpoint()
        self._refresh(force=True)
        self.core.close()

    # ----------------------------------------------------------------------- status

    def _refresh(self, *, force: bool) -> None:
        """Hand the latest status to the metrics, and to the status file when one is set
        (at most every 0.2 s unless ``force``)."""
        status = self.core.status()
        self.telemetry.update(status, self._lag)
        path = self.settings.trainer.status_path
        if path is not None and (force or time.monotonic() - self._status_written > 0.2):
            self._write_status(path, status)
            self._status_written = time.monotonic()

    def _write_status(self, path: Path, status: CoreStatus) -> None:
        latencies = np.asarray(self._freshness)
        body = {
            "events_learned": status.events_learned,
            "events_evaluated": status.events_evaluated,
            "positions": status.positions,
            "dead_letters": status.dead_letters,
            "model_version": status.model_version,
            "consumer_lag": self.core.processor.consumer_lag,
            "retrains_completed": status.retrains_completed,
            "freshness_p50_s": float(np.percentile(latencies, 50)) if len(latencies) else None,
            "freshness_p99_s": float(np.percentile(latencies, 99)) if len(latencies) else None,
            "last_learned_at": status.last_learned_at,
            "updated_at": time.time(),
            "started_at": status.started_at,
            "pid": status.pid,
        }
        atomic_write(path, orjson.dumps(body), durable=False)

    # ------------------------------------------------------------------------ running

    def run(self) -> None:
        """Declare the topics, serve the HTTP endpoints, run the Faust worker until stopped
        (SIGINT/SIGTERM shut it down cleanly)."""
        settings = self.settings
        kafka, trainer = settings.kafka, settings.trainer
        wait_for_topics(kafka, [kafka.topic, kafka.dead_letter_topic], trainer.kafka_wait_s)
        server = TrainerHttpServer(
            trainer.http_host,
            trainer.http_port,
            metrics=self.telemetry.exposition,
            health=self.health,
        )
        server.start()
        try:
            worker = faust.Worker(
                self.app,
                loglevel=settings.log_level,
                logging_config=logging_config(settings),
                quiet=True,
            )
            worker.execute_from_commandline()
        finally:
            server.stop()


def _lag(app: faust.App, events: Sequence[Any]) -> dict[int, int]:
    """Per partition this batch came from, messages behind its end (empty if unknown)."""
    last: dict[Any, int] = {}
    for event in events:
        message = event.message
        last[message.tp] = max(last.get(message.tp, -1), message.offset)
    try:
        return {
            tp.partition: max(0, app.consumer.highwater(tp) - offset - 1)
            for tp, offset in last.items()
        }
    except (AttributeError, KeyError, TypeError):
        return {}


def run_worker(settings: Settings) -> None:
    """Run the trainer until it is stopped."""
    TrainerService(settings).run()
