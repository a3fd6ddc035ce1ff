"""The streaming path on this machine, Kafka on the same machine, MovieLens 100K.

1. The replay producer alone, at maximum speed into a fresh 3-partition topic: with envelopes
   (the default) against one event per message (``envelope_max_events=1``), in the same run.
2. End to end: the trainer (its own process, as deployed) is up and idle; MovieLens 100K is
   replayed at maximum speed; the clock stops when the trainer has learned every event. The
   same messages are then read by a bare aiokafka consumer that only decodes them, and handed
   to the trainer's core alone (``TrainerCore``: decode, evaluate, learn, publish, checkpoint;
   no Kafka, no Faust) in this process: end to end / core alone is the adapter's cost. Both
   publish to the same Redis, as a deployed trainer does. With envelopes, three such rounds in
   turn, their medians compared.
3. Freshness (produce time to learned, p50/p99): a steady 1,000 and 10,000 events/s for 20 s
   into a fresh topic with a trainer running.

Kafka and Redis come from KAFKA_BOOTSTRAP_SERVERS and REDIS_URL, or are started and stopped
here as `make test` does.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from common import NO_ML_100K, Result, ml_100k_root, save, save_skipped

from recsys_stream.data import load_dataset
from recsys_stream.events import decode_message
from recsys_stream.settings import KafkaSettings, Settings
from replay.service import ReplayConfig, Replayer, ReplaySummary
from scripts.test_services import Services, provide_services
from scripts.trainer_process import TrainerProcess
from services.cache.redis_cache import RedisCache
from services.trainer.worker import Message, TrainerCore

COMMAND = ".venv/bin/python benchmarks/bench_streaming.py (make bench)"
DATA = (
    "MovieLens 100K u.data (100,000 events), Kafka 3.9 and Redis on the same machine, 3 partitions"
)


def _replay(servers: str, topic: str, ratings: pd.DataFrame, **kafka: Any) -> ReplaySummary:
    settings = KafkaSettings(bootstrap_servers=servers, topic=topic, partitions=3, **kafka)
    return Replayer(ReplayConfig(kafka=settings), "ml-100k").run(ratings)


def _paced(servers: str, topic: str, ratings: pd.DataFrame, rate: float) -> None:
    settings = KafkaSettings(bootstrap_servers=servers, topic=topic, partitions=3)
    Replayer(ReplayConfig(kafka=settings, rate=rate), "ml-100k").run(ratings)


def _learned(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status["events_learned"] >= count


def _trainer(services: Services, topic: str, workdir: Path, **settings: str) -> TrainerProcess:
    """The trainer as deployed (its own process, publishing to Redis), on the device it would
    pick."""
    folder = workdir / topic
    folder.mkdir()
    trainer = TrainerProcess(
        services.kafka_bootstrap_servers,
        topic,
        folder,
        RECSYS_LEARNER__DEVICE="auto",
        RECSYS_REDIS__URL=services.redis_url,
        **settings,
    )
    trainer.start()
    trainer.wait_for(lambda s: True, timeout=300)  # up, subscribed, idle
    return trainer


async def _consume(
    servers: str, topic: str, total: int, handle: Callable[[ConsumerRecord], int]
) -> float:
    """Read the topic from its start with a fresh group, handing each record to ``handle``
    (which returns how many events it held), until ``total`` events; events/s from the first
    fetch on."""
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
                    seen += handle(record)
    finally:
        await consumer.stop()
    return total / (time.perf_counter() - started)


def _messages(servers: str, topic: str, total: int) -> list[Message]:
    messages: list[Message] = []

    def keep(record: ConsumerRecord) -> int:
        messages.append(Message(record.topic, record.partition, record.offset, record.value, None))
        return len(decode_message(record.value).events)

    asyncio.run(_consume(servers, topic, total, keep))
    return messages


def _core_alone(messages: list[Message], checkpoint: Path, redis_url: str) -> float:
    """Events/s of the trainer's core on these messages, taken as the trainer takes them
    (from an empty ``checkpoint`` path: a fresh core), publishing to Redis as the trainer
    does."""
    settings = Settings(
        trainer={"checkpoint_path": checkpoint},  # type: ignore[arg-type]
        stream={"baselines": False},  # type: ignore[arg-type]
        redis={"url": redis_url, "key_prefix": f"{checkpoint.stem}:"},  # type: ignore[arg-type]
    )
    core = TrainerCore(settings, RedisCache(settings.redis))
    take = settings.trainer.take_messages
    learned = 0
    started = time.perf_counter()
    for start in range(0, len(messages), take):
        learned += core.handle(messages[start : start + take]).learned
        if core.checkpoint_due():
            core.save_checkpoint()
    elapsed = time.perf_counter() - started
    core.close()
    return learned / elapsed


def _learn_through_kafka(
    services: Services,
    topic: str,
    ratings: pd.DataFrame,
    workdir: Path,
    per_message: int | None,
    **trainer_settings: str,
) -> tuple[float, ReplaySummary]:
    """Events/s from the start of a max-speed replay into an idle trainer until it learned
    every event."""
    total = len(ratings)
    kafka = {} if per_message is None else {"envelope_max_events": per_message}
    trainer = _trainer(services, topic, workdir, **trainer_settings)
    try:
        started = time.time()  # wall clock: the trainer's status says when it learned
        replay = _replay(services.kafka_bootstrap_servers, topic, ratings, **kafka)
        status = trainer.wait_for(_learned(total), timeout=900)
    finally:
        trainer.stop()
    return total / (status["last_learned_at"] - started), replay


FAUST_OPTIONS: dict[str, dict[str, str]] = {
    "cython_optimizations": {"RECSYS_TRAINER__FAUST_CYTHON": "true"},
    "no-op Monitor": {"RECSYS_TRAINER__FAUST_MONITOR": "false"},
    "stream_buffer_maxsize 16384": {"RECSYS_TRAINER__STREAM_BUFFER_MAXSIZE": "16384"},
    "broker_max_poll_records 5000": {"RECSYS_TRAINER__MAX_POLL_RECORDS": "5000"},
    "take 2048 messages": {"RECSYS_TRAINER__TAKE_MESSAGES": "2048"},
}
"""The Faust settings measured one at a time, on one event per message (where Faust's
per-message path is the cost)."""


def _faust_options(services: Services, ratings: pd.DataFrame, workdir: Path) -> list[Result]:
    baseline, _ = _learn_through_kafka(
        services, f"bench-faust-{uuid.uuid4().hex[:6]}", ratings, workdir, 1
    )
    results = []
    for name, settings in FAUST_OPTIONS.items():
        rate, _ = _learn_through_kafka(
            services, f"bench-faust-{uuid.uuid4().hex[:6]}", ratings, workdir, 1, **settings
        )
        results.append(
            Result(
                f"end to end, one event per message, Faust {name}",
                rate,
                "events/s",
                "",
                None,
                COMMAND,
                DATA,
                baseline=f"the trainer's defaults {baseline:,.0f} events/s",
                baseline_value=baseline,
                note=" ".join(f"{k}={v}" for k, v in settings.items()),
            )
        )
    return results


E2E_ROUNDS = 3
"""With envelopes, the end-to-end run and its baselines are measured this many times in turn
and their medians compared: this VM's speed drifts within minutes."""


@dataclass(frozen=True)
class _EndToEndRound:
    end_to_end: float
    bare: float
    core_alone: float
    messages: int


def _end_to_end_round(
    services: Services, ratings: pd.DataFrame, workdir: Path, per_message: int | None
) -> _EndToEndRound:
    """Replay at max speed into a trainer that is up and idle, until it learned every event;
    then the same messages through a bare consumer and through the core alone."""
    total = len(ratings)
    topic = f"bench-e2e-{uuid.uuid4().hex[:6]}"
    servers = services.kafka_bootstrap_servers
    end_to_end, replay = _learn_through_kafka(services, topic, ratings, workdir, per_message)
    bare = asyncio.run(
        _consume(servers, topic, total, lambda r: len(decode_message(r.value).events))
    )
    core_alone = _core_alone(
        _messages(servers, topic, total), workdir / f"{topic}-core.ckpt", services.redis_url
    )
    return _EndToEndRound(end_to_end, bare, core_alone, replay.messages)


def _end_to_end(
    services: Services, ratings: pd.DataFrame, workdir: Path, per_message: int | None
) -> Result:
    """The medians of the end-to-end rounds (one round for one event per message, which has
    no goal)."""
    enveloped = per_message is None
    rounds = [
        _end_to_end_round(services, ratings, workdir, per_message)
        for _ in range(E2E_ROUNDS if enveloped else 1)
    ]
    end_to_end = statistics.median(r.end_to_end for r in rounds)
    core_alone = statistics.median(r.core_alone for r in rounds)
    bare = statistics.median(r.bare for r in rounds)
    form = "envelopes" if enveloped else "one event per message"
    return Result(
        f"end to end ({form}): replay at max speed until the trainer learned every event",
        end_to_end,
        "events/s",
        ">= 0.8x the trainer's core alone" if enveloped else "",
        end_to_end >= 0.8 * core_alone if enveloped else None,
        COMMAND,
        DATA,
        baseline=f"the trainer's core alone on the same messages {core_alone:,.0f} events/s; "
        f"a bare aiokafka consumer that only decodes {bare:,.0f} events/s "
        f"({end_to_end / bare:.2f}x)",
        baseline_value=core_alone,
        note=f"{rounds[0].messages:,} messages; the trainer evaluates prequentially, learns "
        f"and publishes to Redis (the core alone too); no baselines; "
        f"median of {len(rounds)} round(s), each in turn",
        extra={
            "bare_consumer_events_per_second": bare,
            "end_to_end_per_round": [r.end_to_end for r in rounds],
            "core_alone_per_round": [r.core_alone for r in rounds],
            # Each round's own ratio (its two rates measured back to back): the goal is
            # checked on the medians above, these show how far the VM moved between rounds.
            "ratio_per_round": [r.end_to_end / r.core_alone for r in rounds],
        },
    )


def main() -> int:
    root = ml_100k_root()
    if root is None:
        return save_skipped(
            "streaming", Result("streaming", None, "events/s", "", None, COMMAND, DATA), NO_ML_100K
        )
    ratings = load_dataset("ml-100k", data_dir=root, allow_download=False).ratings
    total = len(ratings)
    results: list[Result] = []
    with provide_services() as services, tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        servers = services.kafka_bootstrap_servers
        # 1. The producer alone, with and without envelopes.
        single = _replay(
            servers, f"bench-single-{uuid.uuid4().hex[:6]}", ratings, envelope_max_events=1
        )
        enveloped = _replay(servers, f"bench-envelopes-{uuid.uuid4().hex[:6]}", ratings)
        results.append(
            Result(
                "replay producer with envelopes (max speed)",
                enveloped.events_per_second,
                "events/s",
                ">= 4x one event per message",
                enveloped.events_per_second >= 4 * single.events_per_second,
                COMMAND,
                DATA,
                baseline=f"one event per message {single.events_per_second:,.0f} events/s",
                baseline_value=single.events_per_second,
                note=f"{enveloped.messages:,} messages for {enveloped.sent:,} events; "
                "kafka-python, idempotent, lz4, acks=all",
            )
        )
        # 2. End to end, with envelopes and with one event per message.
        results.extend(_end_to_end(services, ratings, workdir, n) for n in (None, 1))
        results.extend(_faust_options(services, ratings, workdir))
        # 3. Freshness at a steady 1,000 and 10,000 events/s.
        for rate, goal_ms in ((1_000, 250), (10_000, 1_000)):
            topic = f"bench-fresh-{rate}-{uuid.uuid4().hex[:6]}"
            trainer = _trainer(services, topic, workdir)
            try:
                steady = ratings.iloc[: 20 * rate] if 20 * rate <= total else ratings
                _paced(servers, topic, steady, float(rate))
                status = trainer.wait_for(_learned(len(steady)), timeout=900)
            finally:
                trainer.stop()
            p50, p99 = status["freshness_p50_s"] * 1000, status["freshness_p99_s"] * 1000
            results.append(
                Result(
                    f"freshness at {rate:,} events/s, p99 (produce -> learned)",
                    p99,
                    "ms",
                    f"<= {goal_ms:,} ms",
                    p99 <= goal_ms,
                    COMMAND,
                    f"MovieLens 100K, the first {len(steady):,} events at {rate:,} events/s",
                    note=f"p50 {p50:.0f} ms; over the last 10,000 events",
                    extra={"p50_ms": p50},
                )
            )
    save("streaming", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
