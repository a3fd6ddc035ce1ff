"""The Faust trainer: Kafka in, the online learner in the middle, results out.

One agent consumes the ratings topic (``noack_take``), hands what it takes to the learner
process (:mod:`services.trainer.learner_process`) and sends the invalid events it reports to the
dead-letter topic with their reason. Run it with ``recsys-stream trainer``.

**Acknowledged means durable, whatever raises.** Faust never commits the ratings topic's
offsets (the topic is declared ``acks=False``, and Faust's own commit skips over a gap of
unacknowledged messages, so acknowledging could not be made safe): the trainer commits them
itself, and only the **durable positions** the learner reports, those of the last checkpoint on
disk, after the dead letters are flushed. No exception, crash or failed checkpoint can move a
committed offset past what a checkpoint holds. At start, the positions of the checkpoint
restored are authoritative: where the group's committed offsets are ahead of them (an older
checkpoint restored, or none readable), the group is rewound to them before it is joined, so
the events after them are read again and learned once.

**SIGTERM** stops taking messages, waits for the takes the learner holds, writes the final
checkpoint, commits its positions and exits 0, all within ``shutdown_timeout_s`` (30 s;
otherwise it exits 1, nothing past the last checkpoint committed).

At start the trainer declares the ratings and dead-letter topics (with the configured
partitions) before it subscribes, so it may start before the replay, the API or any producer.
Its ``/metrics``, ``/healthz`` and ``/readyz`` are served by :mod:`services.trainer.http`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, cast

import faust
import numpy as np
import orjson
from faust.types import TP

from recsys_stream.files import atomic_write
from recsys_stream.settings import Settings
from services.kafka_security import faust_options
from services.logs import logging_config
from services.topics import updates_layout, wait_for_topics
from services.trainer.http import Health, TrainerHttpServer
from services.trainer.learner_process import LearnerDiedError, LearnerProcess, Reply
from services.trainer.offsets import commit_group_offsets, rewind_group
from services.trainer.telemetry import TrainerTelemetry
from services.trainer.worker import CoreStatus, GroupStatus, Handled, Message

log = logging.getLogger(__name__)

TICK_S: Final = 1.0
"""How often the event loop proves it is alive (and the metrics' state is refreshed)."""
STUCK_AFTER_S: Final = 30.0
"""A loop that has not ticked for this long is stuck: ``/healthz`` answers 503."""
IN_FLIGHT: Final = 8
"""Takes handed to the learner and not answered yet: the next are gathered while the learner
learns, and the learner learns what queued up together."""
STARTING_FOR_S: Final = 300.0
"""Before its first tick (restoring a checkpoint, joining the group) a trainer counts as alive
for this long."""


class TrainerService:
    """The Faust app around a :class:`LearnerProcess`, with its telemetry and health."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.learner = LearnerProcess(settings)
        self.telemetry = TrainerTelemetry()
        self._durable: dict[str, int] = {}
        """Per ``topic/partition``, the next offset the last checkpoint on disk does not hold:
        the only offsets ever committed."""
        self._committed: dict[str, int] = {}
        self._in_flight: set[asyncio.Future[None]] = set()
        self._fatal: str | None = None
        self._stopping: asyncio.Future[None] | None = None
        self._failures_seen = 0
        self._freshness: deque[float] = deque(maxlen=10_000)
        self._staleness: deque[float] = deque(maxlen=10_000)
        """Of a group's worker: publication to application of the latest updates applied."""
        self._lag: dict[int, int] = {}
        self._created = time.monotonic()
        self._last_tick: float | None = None
        self._assigned = False
        self._status: CoreStatus | None = None
        self._checkpoints_seen = 0
        self._status_written = 0.0
        self.app = self._build_app()

    # ------------------------------------------------------------------------ health

    def health(self) -> Health:
        now = time.monotonic()
        if self._last_tick is None:
            alive = now - self._created < STARTING_FOR_S
        else:
            alive = now - self._last_tick < STUCK_AFTER_S
        ticking = self._last_tick is not None and now - self._last_tick < STUCK_AFTER_S
        failing = self._status is not None and self._status.checkpoint.failing_since is not None
        return Health(
            alive=alive and self.learner.alive(),
            checks={
                "restored": self._status is not None,
                "learner_alive": self.learner.alive(),
                "partitions_assigned": self._assigned,
                "ticking": ticking,
                "checkpoint_ok": not failing,
            },
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
            # Nothing of the ratings topic is ever acknowledged to Faust (acks=False below), so
            # a shutdown must not wait for acknowledgements: the final checkpoint settles all.
            stream_wait_empty=False,
            broker_heartbeat_interval=2.0,
            # Measured one at a time in benchmarks/bench_streaming.py (docs/streaming.md).
            cython_optimizations=trainer.faust_cython,
            stream_buffer_maxsize=trainer.stream_buffer_maxsize,
            broker_max_poll_records=trainer.max_poll_records,
            Monitor=faust.Monitor if trainer.faust_monitor else QuietMonitor,
            **faust_options(kafka),
        )
        # acks=False: Faust commits none of its offsets; the trainer commits durable ones.
        ratings = app.topic(kafka.topic, value_type=bytes, key_type=bytes, acks=False)
        self._dead_letters = app.topic(kafka.dead_letter_topic, value_type=bytes, key_type=bytes)
        app.agent(ratings)(self._learn)
        app.timer(interval=TICK_S)(self._tick)
        # mode annotates handlers with a forward reference that mypy cannot resolve.
        app.on_partitions_assigned.connect(cast(Any, self._on_assigned))
        if trainer.scale_out:
            app.on_partitions_revoked.connect(cast(Any, self._on_revoked))
        app.on_before_shutdown.connect(cast(Any, self._flush))
        return app

    async def _learn(self, stream: faust.StreamT[Any]) -> None:
        # noack_take (a Stream method, not on StreamT) yields the events themselves, whose
        # messages carry the offsets to acknowledge.
        events_of = cast(faust.Stream[Any], stream)
        take = self.settings.trainer.take_messages
        timeout = self.settings.trainer.batch_timeout_s
        in_flight: deque[asyncio.Future[None]] = deque()
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
            lag = sum(self._lag.values()) if self._lag else None
            if self._fatal is not None:
                continue  # stopping: what comes now is learned after the restart
            # Pipelined: the next take is gathered (and sent) while the learner learns this one;
            # each reply is taken in as soon as it comes.
            request = asyncio.ensure_future(self._learn_take(messages, lag))
            self._in_flight.add(request)
            request.add_done_callback(self._in_flight.discard)
            in_flight.append(request)
            if len(in_flight) >= IN_FLIGHT:
                await in_flight.popleft()
            while in_flight and in_flight[0].done():
                await in_flight.popleft()  # raises what a finished one raised
        for pending in in_flight:
            await pending

    async def _learn_take(self, messages: list[Message], lag: int | None) -> None:
        reply = await self._ask(self.learner.handle(messages, lag))
        assert reply.handled is not None
        await self._send_dead_letters(reply.handled)
        self._count(messages, reply.handled)
        self._settle(reply)
        # Throttled while behind; written at once when caught up, so that whoever watches the
        # status sees the end of a burst without waiting for the timer.
        self._refresh(force=lag == 0)

    async def _ask(self, request: Awaitable[Reply]) -> Reply:
        """A reply of the learner process; if it died, the trainer stops (exit 1): nothing it
        held was acknowledged, so a restart learns it again, exactly once."""
        try:
            return await request
        except LearnerDiedError as exc:
            log.error("the learner process died: %s; stopping the trainer", exc)
            await self.app.crash(exc)
            raise

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
        ages, learned = [], []
        for message, count in zip(messages, handled.learned_per_message, strict=True):
            if message.timestamp is not None and count > 0:
                ages.append(now - message.timestamp)
                learned.append(count)
                self._freshness.extend(itertools.repeat(ages[-1], count))
        self.telemetry.batch(
            consumed=handled.events,
            dead_letters=[letter.code for letter in handled.dead_letters],
            freshness_s=ages,
            learned=learned,
        )

    def _settle(self, reply: Reply) -> None:
        """Take in the learner's status and its durable positions (committed by the next
        tick); stop the trainer if the learner cannot go on."""
        self._status = reply.status
        if reply.status.group is not None:
            self.telemetry.group(reply.status.group)
            self._staleness.extend(reply.status.group.staleness_s)
        checkpoint = reply.status.checkpoint
        if checkpoint.written > self._checkpoints_seen and checkpoint.seconds is not None:
            self.telemetry.checkpoint_duration.observe(checkpoint.seconds)
            self._checkpoints_seen = checkpoint.written
        if checkpoint.failures > self._failures_seen:
            self.telemetry.checkpoint_failures.inc(checkpoint.failures - self._failures_seen)
            self._failures_seen = checkpoint.failures
        for source, offset in reply.durable.items():
            self._durable[source] = max(self._durable.get(source, 0), offset)
        if reply.fatal is not None and self._fatal is None:
            self._fatal = reply.fatal
            log.error(
                "%s: stopping the trainer (exit 1); nothing past the last checkpoint was committed",
                reply.fatal,
            )
            self._stopping = asyncio.ensure_future(self.app.crash(RuntimeError(reply.fatal)))

    async def _tick(self) -> None:
        self._last_tick = time.monotonic()
        if self._status is None:
            return  # not started yet
        self._settle(await self._ask(self.learner.tick()))
        await self._commit_durable()
        self._refresh(force=True)

    async def _commit_durable(self) -> None:
        """Commit the durable positions that moved (after the dead letters are flushed, so
        none of the messages committed has its dead letter still in a buffer)."""
        assignment = self.app.consumer.assignment()
        offsets = {
            TP(topic, int(partition)): offset
            for source, offset in self._durable.items()
            if offset > self._committed.get(source, -1)
            for topic, partition in [source.rsplit("/", 1)]
            if TP(topic, int(partition)) in assignment
        }
        if not offsets:
            return
        try:
            await self.app.producer.flush()
            # The transport's commit of given offsets (Faust's public commit() commits only
            # what was acknowledged to it, which nothing of this topic is).
            consumer: Any = self.app.consumer
            committed = await consumer._commit(offsets)
        except Exception as exc:  # tried again at the next tick
            log.warning("committing the durable offsets failed: %r", exc)
            return
        if committed:
            for tp, offset in offsets.items():
                self._committed[f"{tp.topic}/{tp.partition}"] = offset

    async def _on_assigned(self, _sender: Any, assigned: Any = (), *_: Any, **__: Any) -> None:
        partitions = sorted(f"{tp.topic}/{tp.partition}" for tp in assigned)
        log.info("partitions assigned: %s", partitions, extra={"partitions": partitions})
        if self.settings.trainer.scale_out:
            # The rebalance waits: no message of these partitions is fetched before the
            # learner holds every update the group published.
            await self._rebalance(self.learner.assign(self._ratings(assigned)))
        self._assigned = True

    async def _on_revoked(self, _sender: Any, revoked: Any = (), *_: Any, **__: Any) -> None:
        """A worker of a group gives partitions up: what it learned of them is published (the
        takes in flight answered first, the pipe keeps their order) and committed before the
        group moves on."""
        await self._rebalance(self.learner.revoke(self._ratings(revoked)))
        await self._commit_durable()

    def _ratings(self, partitions: Any) -> list[str]:
        topic = self.settings.kafka.topic
        return sorted(f"{tp.topic}/{tp.partition}" for tp in partitions if tp.topic == topic)

    async def _rebalance(self, request: Awaitable[Reply]) -> None:
        reply = await self._ask(request)
        self._settle(reply)
        if reply.error is not None:
            log.error("stopping the trainer: %s", reply.error)
            await self.app.crash(RuntimeError(reply.error))

    async def _flush(self, _sender: Any, *_: Any, **__: Any) -> None:
        """At shutdown (the consumer stopped): the takes the learner holds are answered (their
        dead letters sent), then the final checkpoint; its positions are committed by
        :meth:`run` once the consumer left the group."""
        if self._in_flight:
            bound = self.settings.trainer.shutdown_timeout_s / 2
            await asyncio.wait(set(self._in_flight), timeout=bound)
        if self.learner.alive():
            reply = await self.learner.close()
            self._settle(reply)
            if reply.status.checkpoint.failing_since is not None:
                self._fatal = self._fatal or "the final checkpoint could not be written"
        self._refresh(force=True)

    # ----------------------------------------------------------------------- status

    def _refresh(self, *, force: bool) -> None:
        """Hand the latest status to the metrics, and to the status file when one is set
        (at most every 0.2 s unless ``force``)."""
        status = self._status
        if status is None:
            return
        self.telemetry.update(status, self._lag)
        path = self.settings.trainer.status_path
        if path is not None and (force or time.monotonic() - self._status_written > 0.2):
            self._write_status(path, status)
            self._status_written = time.monotonic()

    def _write_status(self, path: Path, status: CoreStatus) -> None:
        body = {
            "events_learned": status.events_learned,
            "events_evaluated": status.events_evaluated,
            "positions": status.positions,
            "dead_letters": status.dead_letters,
            "model_version": status.model_version,
            "consumer_lag": sum(self._lag.values()) if self._lag else None,
            "retrains_completed": status.retrains_completed,
            "retrain_running": status.retrain_running,
            "steps_skipped": status.steps_skipped,
            "freshness_p50_s": _percentile(self._freshness, 50),
            "freshness_p99_s": _percentile(self._freshness, 99),
            "last_learned_at": status.last_learned_at,
            "updated_at": time.time(),
            "started_at": status.started_at,
            "pid": os.getpid(),
            "learner_pid": status.pid,
            "dead_letters_by_code": status.dead_letters_by_code,
            "durable": dict(self._durable),
            "committed": dict(self._committed),
            "checkpoint_sequence": status.checkpoint.sequence,
            "checkpoints_written": status.checkpoint.written,
            "checkpoint_failures": status.checkpoint.failures,
            "checkpoint_failing": status.checkpoint.failing_since is not None,
            "restored_from": status.restored_from,
            "quarantined": status.quarantined,
            "group": None if status.group is None else _group_body(status.group),
            "update_staleness_p50_s": _percentile(self._staleness, 50),
            "update_staleness_p99_s": _percentile(self._staleness, 99),
            "report_events": None if status.live is None else status.live.events,
            "hit_rates": (
                {}
                if status.live is None
                else {model: figures.overall.hr for model, figures in status.live.models.items()}
            ),
        }
        atomic_write(path, orjson.dumps(body), durable=False)

    # ------------------------------------------------------------------------ running

    def run(self) -> None:
        """Declare the topics, start the learner process, serve the HTTP endpoints, run the
        Faust worker until stopped (SIGINT/SIGTERM shut it down cleanly)."""
        settings = self.settings
        kafka, trainer = settings.kafka, settings.trainer
        topics = [kafka.topic, kafka.dead_letter_topic]
        layouts = updates_layout(kafka) if trainer.scale_out else {}
        wait_for_topics(kafka, [*topics, *layouts], trainer.kafka_wait_s, layouts)
        server = TrainerHttpServer(
            trainer.http_host,
            trainer.http_port,
            metrics=self.telemetry.exposition,
            health=self.health,
        )
        server.start()
        try:
            initial = self.learner.start()
            self._status = initial.status
            self._durable = dict(initial.durable)
            self.telemetry.update(self._status)
            self.telemetry.restore_dead_letters(self._status.dead_letters_by_code)
            if not trainer.scale_out:
                # A group's committed offsets never pass what its updates topic holds, which
                # a worker reads before it learns a partition: nothing to rewind.
                partitions = rewind_group(
                    kafka,
                    trainer.app_id,
                    kafka.topic,
                    _positions_of(self._durable, kafka.topic),
                    trainer.kafka_wait_s,
                )
                self._committed = {f"{kafka.topic}/{p}": o for p, o in partitions.items()}
            worker = ShutdownBoundWorker(
                self.app,
                trainer.shutdown_timeout_s,
                loglevel=settings.log_level,
                logging_config=logging_config(settings),
                quiet=True,
            )
            try:
                worker.execute_from_commandline()
            except SystemExit as done:
                self._commit_final()
                if self._fatal is not None and not done.code:
                    raise SystemExit(1) from None
                raise
        finally:
            server.stop()

    def _commit_final(self) -> None:
        """After the worker stopped: commit the last durable positions (the group is empty
        now), so that the consumer lag reads true; a restart needs only the checkpoint."""
        kafka = self.settings.kafka
        if self.settings.trainer.scale_out:
            return  # the group lives on; its next owner reads the updates topic
        moved = {
            partition: offset
            for partition, offset in _positions_of(self._durable, kafka.topic).items()
            if offset > self._committed.get(f"{kafka.topic}/{partition}", -1)
        }
        if not moved:
            return
        try:
            commit_group_offsets(kafka, self.settings.trainer.app_id, kafka.topic, moved, 10.0)
        except Exception as exc:
            log.warning("could not commit the final offsets %s: %r", moved, exc)
        else:
            log.info("committed the final offsets %s", moved, extra={"offsets": moved})


class ShutdownBoundWorker(faust.Worker):
    """A Faust worker whose shutdown after SIGTERM or SIGINT takes at most ``bound_s``: past
    it, the process exits 1 (nothing past the last checkpoint was committed, so nothing is
    lost)."""

    def __init__(self, app: faust.App, bound_s: float, **options: Any) -> None:
        super().__init__(app, **options)
        self._bound_s = bound_s
        self._watchdog: threading.Timer | None = None

    def _arm(self) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._bound_s, _exit_overdue, (self._bound_s,))
            self._watchdog.daemon = True
            self._watchdog.start()

    def _on_sigterm(self) -> None:
        self._arm()
        super()._on_sigterm()

    def _on_sigint(self) -> None:
        self._arm()
        super()._on_sigint()


def _exit_overdue(bound_s: float) -> None:
    log.error("shutdown took longer than %.0f s: exiting 1", bound_s)
    logging.shutdown()
    os._exit(1)


class QuietMonitor(faust.Monitor):
    """A Monitor that records nothing per message or event: the trainer's own telemetry
    counts what matters, and Faust's per-event bookkeeping costs event-loop time."""

    def on_message_in(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_stream_event_in(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_stream_event_out(self, *args: Any, **kwargs: Any) -> None:
        return None

    def on_message_out(self, *args: Any, **kwargs: Any) -> None:
        return None


def _percentile(values: deque[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if values else None


def _group_body(group: GroupStatus) -> dict[str, Any]:
    """The group's part of the status file (its staleness samples go in as percentiles)."""
    body = dataclasses.asdict(group)
    del body["staleness_s"]
    return body


def _positions_of(durable: Mapping[str, int], topic: str) -> dict[int, int]:
    return {
        int(source.rsplit("/", 1)[1]): offset
        for source, offset in durable.items()
        if source.rsplit("/", 1)[0] == topic
    }


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
