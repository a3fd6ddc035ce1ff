"""The streaming path on this machine, Kafka on the same machine.

1. The replay producer alone: MovieLens 100K at maximum speed into a fresh topic.
2. End to end: the trainer (its own process, as deployed) is up and idle, MovieLens 100K is
   replayed at maximum speed, and the clock stops when the trainer has learned every event. The
   same topic is then read by a bare aiokafka consumer that only decodes each message: the
   ratio between the two is the cost of learning. For where the time goes, the trainer's core
   (``TrainerCore``: decode, evaluate, learn, publish, checkpoint; no Kafka, no Faust) is also
   timed alone on the same messages in this process.
3. Freshness: a steady 1,000 events/s for 20 s into a fresh topic with a trainer running; the
   trainer measures, per event, the time from the producer's timestamp to the end of the
   micro-batch that learned it.

Kafka comes from KAFKA_BOOTSTRAP_SERVERS, or is started and stopped here as `make test` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka import AIOKafkaConsumer, ConsumerRecord
from common import NO_ML_100K, Result, ml_100k_root, save, save_skipped

from recsys_stream.data import load_dataset
from recsys_stream.events import decode
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import KafkaSettings, Settings
from replay.service import ReplayConfig, Replayer
from scripts.test_services import provide_kafka
from scripts.trainer_process import TrainerProcess
from services.trainer.worker import Message, TrainerCore

COMMAND = ".venv/bin/python benchmarks/bench_streaming.py (make bench)"
DATA = "MovieLens 100K u.data (100,000 events), Kafka 3.9 on the same machine, 3 partitions"


@contextlib.contextmanager
def kafka() -> Iterator[str]:
    with provide_kafka() as servers:
        yield servers


def _kafka(servers: str, topic: str) -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=servers, topic=topic)


def _trainer(servers: str, topic: str, workdir: Path) -> TrainerProcess:
    """The trainer as deployed (its own process), on the device it would pick."""
    folder = workdir / topic
    folder.mkdir()
    trainer = TrainerProcess(servers, topic, folder, RECSYS_LEARNER__DEVICE="auto")
    trainer.start()
    return trainer


async def _consume(
    servers: str, topic: str, total: int, handle: Callable[[ConsumerRecord], None]
) -> float:
    """Read the topic from its start with a fresh group, handing each record to ``handle``,
    until ``total`` records; returns events/s from the first fetch on."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        auto_offset_reset="earliest",
        group_id=f"bench-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen = 0
    started = time.perf_counter()
    try:
        while seen < total:
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for record in records:
                    handle(record)
                    seen += 1
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - started)


def _read_topic(servers: str, topic: str, total: int) -> list[Message]:
    messages: list[Message] = []
    asyncio.run(
        _consume(
            servers,
            topic,
            total,
            lambda r: messages.append(
                Message(r.topic, r.partition, r.offset, r.value, r.timestamp / 1000)
            ),
        )
    )
    return messages


def _core_alone(messages: list[Message], workdir: Path) -> float:
    """Events/s of the trainer's core on these messages, in micro-batches, as the trainer."""
    settings = Settings(
        trainer={"checkpoint_path": workdir / "core-alone.ckpt"}, stream={"baselines": False}
    )
    core = TrainerCore(settings, InMemorySink())
    size = settings.stream.batch_size
    started = time.perf_counter()
    for start in range(0, len(messages), size):
        core.handle(messages[start : start + size])
        if core.checkpoint_due():
            core.save_checkpoint()
    elapsed = time.perf_counter() - started
    core.close()
    return len(messages) / elapsed


def main() -> int:
    root = ml_100k_root()
    if root is None:
        return save_skipped(
            "streaming",
            Result(
                "streaming",
                None,
                "events/s",
                "",
                None,
                COMMAND,
                DATA,
            ),
            NO_ML_100K,
        )
    ratings = load_dataset("ml-100k", data_dir=root, allow_download=False).ratings
    total = len(ratings)
    results: list[Result] = []
    with kafka() as servers, tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        # 1. The producer alone.
        topic = f"bench-produce-{uuid.uuid4().hex[:6]}"
        summary = Replayer(ReplayConfig(kafka=_kafka(servers, topic)), "ml-100k").run(ratings)
        results.append(
            Result(
                "replay producer alone (max speed)",
                summary.events_per_second,
                "events/s",
                ">= 50,000",
                summary.events_per_second >= 50_000,
                COMMAND,
                DATA,
                note="kafka-python idempotent producer, lz4, acks=all",
            )
        )
        # 2. End to end.
        topic = f"bench-e2e-{uuid.uuid4().hex[:6]}"
        Replayer(ReplayConfig(kafka=_kafka(servers, topic)), "ml-100k").run(
            ratings.iloc[:0]
        )  # creates the topic, so the trainer subscribes before the clock starts
        trainer = _trainer(servers, topic, workdir)
        try:
            trainer.wait_for(lambda s: True, timeout=300)  # up and idle
            started = time.time()  # wall clock: the trainer's status says when it learned
            Replayer(ReplayConfig(kafka=_kafka(servers, topic)), "ml-100k").run(ratings)
            status = trainer.wait_for(lambda s: s["events_learned"] >= total, timeout=600)
            end_to_end = total / (status["last_learned_at"] - started)
        finally:
            trainer.stop()
        bare = asyncio.run(_consume(servers, topic, total, lambda r: decode(r.value)))
        core_alone = _core_alone(_read_topic(servers, topic, total), workdir)
        results.append(
            Result(
                "end to end: replay at max speed until the trainer learned every event",
                end_to_end,
                "events/s",
                ">= 30,000 and >= 0.5x bare consumer",
                end_to_end >= 30_000 and end_to_end >= 0.5 * bare,
                COMMAND,
                DATA,
                baseline=f"{end_to_end / bare:.2f}x a bare aiokafka consumer that only decodes "
                f"({bare:,.0f} events/s); {end_to_end / core_alone:.2f}x the trainer's core "
                f"alone on the same messages, no Kafka ({core_alone:,.0f} events/s)",
                note="trainer evaluates prequentially and learns; no baselines",
            )
        )
        # 3. Freshness at a steady 1,000 events/s.
        topic = f"bench-fresh-{uuid.uuid4().hex[:6]}"
        Replayer(ReplayConfig(kafka=_kafka(servers, topic)), "ml-100k").run(ratings.iloc[:0])
        trainer = _trainer(servers, topic, workdir)
        try:
            trainer.wait_for(lambda s: True, timeout=300)
            steady = ratings.iloc[:20_000]
            Replayer(ReplayConfig(kafka=_kafka(servers, topic), rate=1000.0), "ml-100k").run(steady)
            status = trainer.wait_for(lambda s: s["events_learned"] >= len(steady), timeout=600)
        finally:
            trainer.stop()
        p50, p99 = status["freshness_p50_s"] * 1000, status["freshness_p99_s"] * 1000
        results.append(
            Result(
                "freshness at 1,000 events/s, p99 (produce -> learned)",
                p99,
                "ms",
                "<= 250 ms",
                p99 <= 250,
                COMMAND,
                "MovieLens 100K, first 20,000 events at 1,000 events/s",
                note=f"p50 {p50:.0f} ms; over the last 10,000 events",
            )
        )
    save("streaming", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
