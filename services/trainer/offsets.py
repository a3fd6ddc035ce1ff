"""The consumer group's committed offsets, read and set outside Faust.

The trainer's checkpoint is the truth about where each partition stands; the group's committed
offsets only follow it. Two moments need them set from outside the Faust consumer:

- at start, before the group is joined: a group whose committed offsets are ahead of the
  checkpoint restored (an older checkpoint, because the newer ones were unreadable; or none) is
  rewound to the checkpoint's positions (0 where it has none), so that nothing between them is
  skipped: it is read again and learned once;
- after a clean shutdown, once the consumer left the group: the final checkpoint's positions.

A group that still has a member (a trainer killed a moment ago, until its session times out)
refuses commits from outside; they are tried again until ``wait_s`` has passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from recsys_stream.settings import KafkaSettings
from services.kafka_security import kafka_python_options

log = logging.getLogger(__name__)

RETRY_S = 1.0
"""Wait between two attempts at a commit the group refused."""


def _consumer(kafka: KafkaSettings, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=kafka.bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        request_timeout_ms=int(max(kafka.connect_timeout_s, 5) * 1000) + 1000,
        **kafka_python_options(kafka),
    )


def _commit(consumer: KafkaConsumer, topic: str, offsets: Mapping[int, int], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    request = {
        TopicPartition(topic, partition): OffsetAndMetadata(offset, "", -1)
        for partition, offset in offsets.items()
    }
    while True:
        try:
            consumer.commit(request)
            return
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise
            log.info("the group refuses the commit for now (%r); trying again", exc)
            time.sleep(RETRY_S)  # back off between attempts of a bounded retry


def commit_group_offsets(
    kafka: KafkaSettings, group: str, topic: str, offsets: Mapping[int, int], wait_s: float
) -> None:
    """Commit ``offsets`` (per partition of ``topic``) for ``group``, from outside it."""
    consumer = _consumer(kafka, group)
    try:
        _commit(consumer, topic, offsets, wait_s)
    finally:
        consumer.close()


def rewind_group(
    kafka: KafkaSettings, group: str, topic: str, positions: Mapping[int, int], wait_s: float
) -> dict[int, int]:
    """Rewind the partitions whose committed offset is ahead of ``positions`` (those of the
    checkpoint restored; 0 for a partition it does not hold); returns every partition's
    committed offset afterwards (-1: none committed)."""
    consumer = _consumer(kafka, group)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        committed = {
            partition: consumer.committed(TopicPartition(topic, partition))
            for partition in partitions
        }
        ahead = {
            partition: positions.get(partition, 0)
            for partition, offset in committed.items()
            if offset is not None and offset > positions.get(partition, 0)
        }
        if ahead:
            log.warning(
                "the group %s committed offsets past the checkpoint restored; rewinding %s "
                "from %s to the checkpoint's %s, to learn what lies between",
                group,
                topic,
                {p: committed[p] for p in ahead},
                ahead,
                extra={"committed": {p: committed[p] for p in ahead}, "rewound_to": ahead},
            )
            _commit(consumer, topic, ahead, wait_s)
        return {
            partition: ahead.get(partition, -1 if offset is None else offset)
            for partition, offset in committed.items()
        }
    finally:
        consumer.close()
