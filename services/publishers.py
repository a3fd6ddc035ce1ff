"""Where the API sends real-time events: the Kafka topic, or the embedded event log.

Both take a request's events whole, and what they answer is true:

- **confirmed**: every envelope acknowledged by the broker (idempotent producer, ``acks=all``);
- :class:`PublishError`, **none was published**: the broker did not answer a metadata request
  just before (a round trip, not the producer's cached metadata), so nothing was handed to the
  producer; or the send failed and every record was still waiting in the producer, which is
  then discarded with its queue (kafka clients cannot take a queued record back, so the whole
  producer goes, and a fresh one serves the next request): nothing is delivered later;
- :class:`PublishUnconfirmedError`: some records had been sent to the broker, which did not
  answer in time; the rest are cancelled as above, but those may have been written. The API
  answers that with the event ids, so that a client can tell which to look for.

Events go into envelopes per target partition (the user's, as the replay does, so each user's
events stay in order).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from recsys_stream.events import InMemoryEventLog, RatingEvent, encode, pack
from recsys_stream.serving import PublishError, PublishUnconfirmedError
from recsys_stream.settings import KafkaSettings
from services.kafka_security import aiokafka_options
from services.topics import partition_of

log = logging.getLogger(__name__)

PROBE_S = 2.0
"""Longest wait for the broker's answer to the metadata request before a publish."""


class KafkaEventPublisher:
    """Sends events to the ratings topic, keyed by user (as the replay does)."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.discarded = 0
        """Producers thrown away with their queue after a failed send."""

    async def _connected(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.settings.bootstrap_servers,
                    enable_idempotence=True,
                    acks="all",
                    linger_ms=2,
                    request_timeout_ms=int(self.timeout_s * 1000),
                    compression_type="lz4",
                    **aiokafka_options(self.settings),
                )
                try:
                    await asyncio.wait_for(producer.start(), self.timeout_s)
                except (TimeoutError, KafkaError, OSError) as exc:
                    await _discard(producer)
                    raise PublishError(
                        f"Kafka at {self.settings.bootstrap_servers} is unreachable "
                        f"({type(exc).__name__})"
                    ) from exc
                self._producer = producer
            return self._producer

    async def _partitions(self, producer: AIOKafkaProducer) -> int:
        """The topic's partition count, from a metadata round trip to a broker that answers
        now; :class:`PublishError` if none does or a partition has no leader."""
        topic = self.settings.topic
        try:
            metadata = await asyncio.wait_for(
                producer.client.fetch_all_metadata(), min(PROBE_S, self.timeout_s)
            )
        except (TimeoutError, KafkaError, OSError) as exc:
            raise PublishError(f"Kafka does not answer ({type(exc).__name__})") from exc
        partitions = metadata.partitions_for_topic(topic)
        if not partitions:
            raise PublishError(f"Kafka topic {topic} is unavailable")
        if len(metadata.available_partitions_for_topic(topic) or ()) < len(partitions):
            raise PublishError(f"Kafka topic {topic} has partitions without a leader")
        return len(partitions)

    async def publish(self, events: list[RatingEvent]) -> None:
        producer = await self._connected()
        count = await self._partitions(producer)
        topic = self.settings.topic
        by_partition: dict[int, list[RatingEvent]] = {}
        for event in events:
            partition = partition_of(str(event.user_id).encode(), count)
            by_partition.setdefault(partition, []).append(event)
        sends: list[tuple[asyncio.Future[Any], int]] = []
        try:
            for partition, group in by_partition.items():
                for envelope, size in pack(
                    group,
                    max_events=self.settings.envelope_max_events,
                    max_bytes=self.settings.envelope_max_bytes,
                ):
                    future = await producer.send(
                        topic,
                        value=encode(group[0]) if size == 1 else envelope,
                        key=str(group[0].user_id).encode(),
                        partition=partition,
                    )
                    sends.append((future, size))
            await asyncio.wait_for(asyncio.gather(*(future for future, _ in sends)), self.timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            confirmed = sum(
                size
                for future, size in sends
                if future.done() and not future.cancelled() and future.exception() is None
            )
            written = confirmed > 0 or _sent_any(producer)
            await self._throw_away(producer)
            log.error(
                "publishing %d events failed (%s); %d confirmed, the rest cancelled",
                len(events),
                type(exc).__name__,
                confirmed,
            )
            if written:
                raise PublishUnconfirmedError(
                    f"Kafka confirmed {confirmed} of {len(events)} events before it failed "
                    f"({type(exc).__name__}); the others were cancelled, but some of them "
                    "may have been written",
                    confirmed,
                ) from exc
            raise PublishError(
                f"Kafka did not take the events ({type(exc).__name__}); they were cancelled"
            ) from exc

    async def _throw_away(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        self.discarded += 1
        await _discard(producer)

    async def ping(self) -> bool:
        """The broker answers a metadata request now, and the topic has all its leaders."""
        try:
            await self._partitions(await self._connected())
        except PublishError:
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await asyncio.wait_for(producer.stop(), self.timeout_s)
            except (TimeoutError, KafkaError, OSError):
                await _discard(producer)


def _sent_any(producer: AIOKafkaProducer) -> bool:
    """Whether a produce request of ``producer`` is out, waiting for the broker's answer."""
    sender: Any = getattr(producer, "_sender", None)
    return bool(getattr(sender, "_in_flight", ()))


async def _discard(producer: AIOKafkaProducer) -> None:
    """Stop ``producer`` without delivering what it holds: its queued batches fail, its
    sender stops and its connections close, so no record it held is sent later."""
    internals: Any = producer
    accumulator = getattr(internals, "_message_accumulator", None)
    if accumulator is not None:
        accumulator.fail_all(KafkaError("cancelled: the publish was abandoned"))
    sender = getattr(internals, "_sender", None)
    task = getattr(sender, "sender_task", None)
    if task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    internals._closed = True
    try:
        await asyncio.wait_for(producer.client.close(), 1.0)
    except (TimeoutError, KafkaError, OSError):
        log.warning("the discarded producer's connections did not close in time")


class EventLogPublisher:
    """Appends events to the embedded, in-process event log (``simulate --serve``)."""

    def __init__(self, log: InMemoryEventLog) -> None:
        self.log = log

    async def publish(self, events: list[RatingEvent]) -> None:
        self.log.extend(
            [encode(event) for event in events], [str(event.user_id).encode() for event in events]
        )

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        """Nothing to release: the log belongs to the simulation."""
