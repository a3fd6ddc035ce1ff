"""The Kafka topics of the stream, created when missing, whoever starts first.

The replay, the trainer and the API may start in any order (docker compose, Kubernetes): each
declares the topics it uses with the configured partitions before it produces or consumes, so
a consumer never subscribes to a topic that does not exist yet (and then ignores it until
restarted). A topic that exists already is used as it is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.partitioner.default import murmur2

from recsys_stream.settings import KafkaSettings
from services.kafka_security import kafka_python_options

log = logging.getLogger(__name__)


def partition_of(key: bytes, partitions: int) -> int:
    """Kafka's default partition of a key (murmur2, as the Java client computes it): where a
    producer that packs a user's events into envelopes sends them.

    >>> partition_of(b"196", 3) == partition_of(b"196", 3)
    True
    """
    partition: int = (murmur2(key) & 0x7FFFFFFF) % partitions
    return partition


@dataclass(frozen=True)
class TopicLayout:
    """How a topic other than the stream's is created: its partitions and configuration."""

    partitions: int
    config: dict[str, str] = field(default_factory=dict)


def updates_layout(kafka: KafkaSettings) -> dict[str, TopicLayout]:
    """The updates topic of trainer workers that scale out: one partition (one order for every
    reader), large messages, a bounded retention."""
    return {
        kafka.updates_topic: TopicLayout(
            1,
            {
                "max.message.bytes": str(kafka.updates_max_bytes),
                "retention.ms": str(kafka.updates_retention_ms),
                "cleanup.policy": "delete",
            },
        )
    }


class BrokerUnavailableError(RuntimeError):
    """Kafka could not be reached (or a topic got no metadata) within the configured wait."""


def ensure_topics(
    kafka: KafkaSettings,
    names: Sequence[str],
    layouts: Mapping[str, TopicLayout] | None = None,
) -> dict[str, int]:
    """Create the missing topics of ``names`` with ``kafka.partitions`` partitions (or as
    ``layouts`` says) and wait until each has metadata; returns each topic's number of
    partitions."""
    layouts = layouts or {}
    timeout_ms = int(kafka.connect_timeout_s * 1000)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=kafka.bootstrap_servers,
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="recsys-topics",
            **kafka_python_options(kafka),
        )
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"cannot reach Kafka at {kafka.bootstrap_servers} within "
            f"{kafka.connect_timeout_s:.0f} s ({exc})"
        ) from None
    try:
        for name in names:
            try:
                layout = layouts.get(name, TopicLayout(kafka.partitions))
                admin.create_topics(
                    [
                        NewTopic(
                            name,
                            layout.partitions,
                            kafka.replication_factor,
                            topic_configs=layout.config,
                        )
                    ],
                    timeout_ms=timeout_ms,
                )
            except TopicAlreadyExistsError:
                continue
            log.info(
                "created topic %s",
                name,
                extra={"topic": name, "partitions": layout.partitions},
            )
    except KafkaError as exc:
        raise BrokerUnavailableError(f"cannot create the topics {list(names)}: {exc}") from None
    finally:
        admin.close()
    consumer = KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers, **kafka_python_options(kafka)
    )
    try:
        deadline = time.monotonic() + kafka.connect_timeout_s
        found: dict[str, int] = {}
        for name in names:
            while (partitions := consumer.partitions_for_topic(name)) is None:
                if time.monotonic() > deadline:
                    raise BrokerUnavailableError(f"topic {name} has no metadata yet")
                time.sleep(0.1)  # polling interval of a bounded wait for metadata
            found[name] = len(partitions)
        return found
    finally:
        consumer.close()


def wait_for_topics(
    kafka: KafkaSettings,
    names: Sequence[str],
    wait_s: float,
    layouts: Mapping[str, TopicLayout] | None = None,
) -> dict[str, int]:
    """:func:`ensure_topics`, retried while Kafka is not there yet, for up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return ensure_topics(kafka, names, layouts)
        except BrokerUnavailableError as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("waiting for Kafka: %s", exc)
            time.sleep(2.0)  # back off between attempts; each attempt has its own timeout
