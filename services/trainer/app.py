"""The Faust trainer: Kafka in, the online learner in the middle, results out.

One agent consumes the ratings topic in micro-batches (``noack_take``: Faust does not
acknowledge on its own), hands each batch to :class:`TrainerCore` on a worker thread (so the
event loop keeps heart-beating while the model learns), sends invalid messages to the
dead-letter topic with their reason, and acknowledges the batch's messages only after a
checkpoint that includes them is written. Run it with ``recsys-stream trainer``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import faust

from recsys_stream.serving import InMemorySink, OutputSink
from recsys_stream.settings import Settings
from services.cache.redis_cache import RedisCache
from services.trainer.worker import Message, TrainerCore

log = logging.getLogger(__name__)


def create_app(settings: Settings, sink: OutputSink | None = None) -> faust.App:
    """A Faust app (not started) that trains on ``settings.kafka.topic``."""
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
    dead_letters = app.topic(kafka.dead_letter_topic, value_type=bytes, key_type=bytes)
    if sink is None:
        sink = RedisCache(settings.redis) if trainer.sink == "redis" else InMemorySink()
    core = TrainerCore(settings, sink)
    core.restore()  # before consuming: the positions decide what is skipped
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="learner")
    unacknowledged: list[Any] = []

    async def checkpoint() -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, core.save_checkpoint)
        for event in unacknowledged:
            event.ack()
        unacknowledged.clear()

    @app.agent(ratings)
    async def learn(stream: faust.StreamT[Any]) -> None:
        # noack_take (a Stream method, not on StreamT) yields the events themselves: their
        # messages carry the offsets to acknowledge.
        events_of = cast(faust.Stream[Any], stream)
        loop = asyncio.get_running_loop()
        status_written = 0.0
        async for events in events_of.noack_take(
            settings.stream.batch_size, trainer.batch_timeout_s
        ):
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
            core.processor.consumer_lag = _lag(app, events)
            handled = await loop.run_in_executor(executor, core.handle, messages)
            for letter in handled.dead_letters:
                await dead_letters.send(
                    value=letter.payload or b"",
                    headers=[
                        ("reason", letter.reason.encode()),
                        ("source", letter.source.encode()),
                        ("failed_at", str(time.time()).encode()),
                    ],
                )
            unacknowledged.extend(events)
            if core.checkpoint_due():
                await checkpoint()
            # Throttled while behind; written at once when caught up, so that whoever
            # watches the status sees the end of a burst without waiting for the timer.
            caught_up = core.processor.consumer_lag == 0
            if trainer.status_path is not None and (
                caught_up or time.monotonic() - status_written > 0.2
            ):
                core.write_status(trainer.status_path)
                status_written = time.monotonic()

    @app.timer(interval=max(1.0, trainer.checkpoint_every_seconds / 4))  # type: ignore[untyped-decorator]  # faust's
    async def checkpoint_when_idle() -> None:
        # A quiet topic still gets its tail checkpointed (and acknowledged).
        if core.checkpoint_due():
            await checkpoint()
        if trainer.status_path is not None:
            core.write_status(trainer.status_path)

    async def flush(_sender: Any, *_: Any, **__: Any) -> None:
        if core.learned_since_checkpoint:
            await checkpoint()
        if trainer.status_path is not None:
            core.write_status(trainer.status_path)
        core.close()

    # mode annotates handlers with a forward reference that mypy cannot resolve.
    app.on_before_shutdown.connect(cast(Any, flush))

    return app


def _lag(app: faust.App, events: Sequence[Any]) -> int | None:
    """Messages behind the end of the partitions this batch came from (None if unknown)."""
    last: dict[Any, int] = {}
    for event in events:
        message = event.message
        last[message.tp] = max(last.get(message.tp, -1), message.offset)
    try:
        return sum(max(0, app.consumer.highwater(tp) - offset - 1) for tp, offset in last.items())
    except (AttributeError, KeyError, TypeError):
        return None


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the trainer until it is stopped (SIGINT/SIGTERM shut it down cleanly)."""
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
