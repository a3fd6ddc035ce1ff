"""The handles of scripts.test_services that fault-injection tests stop, kill and start again.

Each test starts a private server of its own (local processes, whatever KAFKA_BOOTSTRAP_SERVERS
and REDIS_URL say), so killing it disturbs no other test. What must hold across a restart is
what a fault-injection test builds on: the same address, and for Kafka the same data directory,
with its topics, records and committed offsets.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from scripts.test_services import LocalRedis, ServiceError, local_kafka, local_redis
from tests.integration.processes import read_all

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


def _refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_kafka_keeps_records_and_offsets_across_a_sigkill() -> None:
    topic = f"handles-{uuid.uuid4().hex[:12]}"
    group = f"{topic}-group"
    partition = TopicPartition(topic, 0)
    with local_kafka() as broker:
        address, data_dir = broker.bootstrap_servers, broker.data_dir
        admin = KafkaAdminClient(bootstrap_servers=address)
        try:
            admin.create_topics(
                {topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
            )
        finally:
            admin.close()
        producer = KafkaProducer(bootstrap_servers=address, acks="all")
        try:
            producer.send(topic, key=b"user-1", value=b"rated 5").get(timeout=DEADLINE_S)
        finally:
            producer.close()
        committer = KafkaConsumer(bootstrap_servers=address, group_id=group)
        try:
            committer.commit({partition: OffsetAndMetadata(1, "", -1)})
        finally:
            committer.close()

        broker.kill()
        assert not broker.is_running()
        assert broker.pid is None
        assert _refuses_connections(broker.broker_port)
        assert data_dir.is_dir()

        broker.start()
        assert broker.is_running()
        assert broker.bootstrap_servers == address
        records = read_all(address, topic)
        assert [(record.key, record.value) for record in records] == [(b"user-1", b"rated 5")]
        reader = KafkaConsumer(bootstrap_servers=address, group_id=group)
        try:
            assert reader.committed(partition) == 1
        finally:
            reader.close()

    assert not broker.is_running()
    assert not broker.scratch_dir.exists()


def _wait_until_exited(server: LocalRedis) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while server.is_running():
        assert time.monotonic() < deadline, f"{server} still runs after SIGKILL"
        time.sleep(0.05)


def test_redis_stop_kill_crash_and_start_on_the_same_port() -> None:
    with local_redis() as server:
        url, scratch_dir = server.url, server.scratch_dir
        client = redis.Redis.from_url(url, socket_timeout=5)
        try:
            assert client.set("key", "value") is True

            server.stop()
            assert not server.is_running()
            assert _refuses_connections(server.port)
            assert scratch_dir.is_dir()
            server.start()
            assert server.url == url
            assert client.ping() is True
            assert client.get("key") is None  # in memory only: a restart starts empty

            server.kill()
            assert not server.is_running()
            server.start()
            assert client.ping() is True

            # A crash the handle did not cause: start() notices, reaps it and starts anew.
            pid = server.pid
            assert pid is not None
            os.killpg(pid, signal.SIGKILL)
            _wait_until_exited(server)
            server.start()
            assert server.pid != pid
            assert client.ping() is True
        finally:
            client.close()

    assert not server.is_running()
    assert not scratch_dir.exists()
    with pytest.raises(ServiceError, match="closed"):
        server.start()
