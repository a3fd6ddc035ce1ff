"""Where the API sends real-time events: the Kafka topic, or the embedded event log.

Both take a request's events whole. The Kafka publisher first makes sure the topic's partitions
have leaders (bounded wait), so a broker that is down answers at once and nothing is sent; then
it packs the events into envelopes per target partition (the user's, as the replay does, so
each user's events stay in order), sends them (idempotent producer, ``acks=all``) and waits for
all acknowledgements.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from recsys_stream.events import InMemoryEventLog, RatingEvent, encode, pack
from recsys_stream.serving import PublishError
from recsys_stream.settings import KafkaSettings
from services.topics import partition_of

log = logging.getLogger(__name__)


class KafkaEventPublisher:
    """Sends events to the ratings topic, keyed by user (as the replay does)."""

    def __init__(self, settings: KafkaSettings, timeout_s: float = 5.0) -> None:
        self.settings = settings
        self.timeout_s = timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

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
                )
                try:
                    await asyncio.wait_for(producer.start(), self.timeout_s)
                except (TimeoutError, KafkaError, OSError) as exc:
                    await producer.stop()
                    raise PublishError(
                        f"Kafka at {self.settings.bootstrap_servers} is unreachable: {exc!r}"
                    ) from exc
                self._producer = producer
            return self._producer

    async def publish(self, events: list[RatingEvent]) -> None:
        producer = await self._connected()
        topic = self.settings.topic
        try:
            partitions = await asyncio.wait_for(producer.partitions_for(topic), self.timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            raise PublishError(f"Kafka topic {topic} is unavailable: {exc!r}") from exc
        if not partitions:
            raise PublishError(f"Kafka topic {topic} has no partitions")
        by_partition: dict[int, list[RatingEvent]] = {}
        for event in events:
            partition = partition_of(str(event.user_id).encode(), len(partitions))
            by_partition.setdefault(partition, []).append(event)
        try:
            sends = [
                await producer.send(
                    topic,
                    value=encode(group[0]) if count == 1 else envelope,
                    key=str(group[0].user_id).encode(),
                    partition=partition,
                )
                for partition, group in by_partition.items()
                for envelope, count in pack(
                    group,
                    max_events=self.settings.envelope_max_events,
                    max_bytes=self.settings.envelope_max_bytes,
                )
            ]
            await asyncio.wait_for(asyncio.gather(*sends), self.timeout_s)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.error("publishing %d events failed: %r", len(events), exc)
            raise PublishError(f"Kafka did not take the events: {exc!r}") from exc

    async def ping(self) -> bool:
        try:
            producer = await self._connected()
            await asyncio.wait_for(producer.partitions_for(self.settings.topic), self.timeout_s)
        except (PublishError, TimeoutError, KafkaError, OSError):
            return False
        return True

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


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
