"""Smoke tests: the Kafka and Redis that tests get (see tests/conftest.py) really work.

They exercise what the services are used for — a consumer group reading back everything a
producer wrote, through kafka-python and through aiokafka, and Redis commands and pipelines —
so that a broken provisioning mode fails here, plainly, rather than deep inside a pipeline test.
Every test uses its own topic, consumer group or key prefix, so re-runs against long-lived
servers (KAFKA_BOOTSTRAP_SERVERS / REDIS_URL) never see each other's data.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

pytestmark = pytest.mark.integration

SEED = 20_240_611
MESSAGE_COUNT = 500
PARTITIONS = 3
KEY_COUNT = 7
DEADLINE_S = 60.0
POLL_TIMEOUT_MS = 500

Record = tuple[bytes, bytes]


def _records(seed: int) -> list[Record]:
    """Deterministic keyed records; values are unique so that each one is accounted for."""
    rng = random.Random(seed)
    return [
        (f"user-{rng.randrange(KEY_COUNT)}".encode(), f"{i}:{rng.getrandbits(64):016x}".encode())
        for i in range(MESSAGE_COUNT)
    ]


def _by_key(records: Iterable[Record]) -> dict[bytes, list[bytes]]:
    """Kafka orders records per partition, hence per key: compare per-key sequences."""
    grouped: defaultdict[bytes, list[bytes]] = defaultdict(list)
    for key, value in records:
        grouped[key].append(value)
    return dict(grouped)


def _new_topic(bootstrap_servers: str, prefix: str) -> str:
    """Create a fresh topic with several partitions, and wait until it has leaders, so that
    producing never races topic auto-creation."""
    topic = f"{prefix}-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers)
    try:
        admin.create_topics(
            {topic: {"num_partitions": PARTITIONS, "replication_factor": 1}},
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    return topic


def _assert_all_received(sent: list[Record], received: list[Record]) -> None:
    assert len(received) == len(sent), (
        f"consumed {len(received)} of {len(sent)} records within {DEADLINE_S:.0f} s"
    )
    assert _by_key(received) == _by_key(sent)


def test_kafka_python_produce_and_consume(kafka_bootstrap_servers: str) -> None:
    topic = _new_topic(kafka_bootstrap_servers, "smoke-kafka-python")
    sent = _records(SEED)

    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap_servers, acks="all")
    try:
        futures = [producer.send(topic, key=key, value=value) for key, value in sent]
        producer.flush()
        for future in futures:
            future.get(timeout=DEADLINE_S)  # raises if the broker rejected the record
    finally:
        producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap_servers,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    received: list[Record] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                received.extend((record.key, record.value) for record in batch)
    finally:
        consumer.close()

    _assert_all_received(sent, received)


async def _aiokafka_round_trip(
    bootstrap_servers: str, topic: str, sent: list[Record]
) -> list[Record]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        deliveries = [await producer.send(topic, key=key, value=value) for key, value in sent]
        await asyncio.gather(*deliveries)  # raises if the broker rejected a record
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap_servers,
        group_id=f"{topic}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: list[Record] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
            for batch in batches.values():
                received.extend((record.key, record.value) for record in batch)
    finally:
        await consumer.stop()
    return received


def test_aiokafka_produce_and_consume(kafka_bootstrap_servers: str) -> None:
    topic = _new_topic(kafka_bootstrap_servers, "smoke-aiokafka")
    sent = _records(SEED + 1)

    received = asyncio.run(_aiokafka_round_trip(kafka_bootstrap_servers, topic, sent))

    _assert_all_received(sent, received)


@pytest.fixture
def redis_keys(redis_url: str) -> Iterator[tuple[redis.Redis, str]]:
    """A client and a key prefix of this test's own; its keys are deleted afterwards."""
    client = redis.Redis.from_url(redis_url)
    prefix = f"smoke:{uuid.uuid4().hex[:12]}"
    try:
        yield client, prefix
        if keys := list(client.scan_iter(match=f"{prefix}:*")):
            client.delete(*keys)
    finally:
        client.close()


def test_redis_set_and_get(redis_keys: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_keys
    value = random.Random(SEED).randbytes(64)

    assert client.set(f"{prefix}:value", value, ex=60) is True
    assert client.get(f"{prefix}:value") == value
    assert client.get(f"{prefix}:missing") is None


def test_redis_pipeline(redis_keys: tuple[redis.Redis, str]) -> None:
    client, prefix = redis_keys
    rng = random.Random(SEED)
    values = {f"{prefix}:item:{i}": rng.randbytes(16) for i in range(50)}
    counter = f"{prefix}:counter"

    pipeline = client.pipeline(transaction=True)
    for key, value in values.items():
        pipeline.set(key, value)
    pipeline.incrby(counter, 5)
    pipeline.incrby(counter, 7)
    pipeline.mget(list(values))
    results = pipeline.execute()

    assert results[: len(values)] == [True] * len(values)
    assert results[len(values) : len(values) + 2] == [5, 12]
    assert results[-1] == list(values.values())
