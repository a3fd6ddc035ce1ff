"""The embedded event log: an in-process, partitioned, append-only log with offsets.

It stands in for the Kafka topic when recsys-stream runs as one process: producers append encoded
events keyed by user, consumers read them back partition by partition from an offset, exactly as
they would from Kafka, so the embedded mode exercises the same decode-validate-learn path.

>>> log = InMemoryEventLog(partitions=2)
>>> log.append(key=b"7", value=b"a"), log.append(key=b"7", value=b"b")
((0, 0), (0, 1))
>>> [record.value for record in log.read(partition=0, offset=1, max_records=10)]
[b'b']
>>> log.end_offsets()
[2, 0]
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One message of the log, with its coordinates."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes


def partition_for(key: bytes | None, partitions: int) -> int:
    """The partition of a key: stable across runs (CRC32), so a user's events keep their order."""
    if key is None or partitions == 1:
        return 0
    return zlib.crc32(key) % partitions


class InMemoryEventLog:
    """A thread-safe partitioned log kept in memory."""

    def __init__(self, partitions: int = 1) -> None:
        if partitions < 1:
            raise ValueError("an event log needs at least one partition")
        # Per partition, each message's key and value: a record is built when read, so that a
        # log of millions of events holds their bytes and little else (25M events: 2.5 GB less).
        self._keys: list[list[bytes | None]] = [[] for _ in range(partitions)]
        self._values: list[list[bytes]] = [[] for _ in range(partitions)]
        self._lock = threading.Lock()
        self._appended = threading.Condition(self._lock)

    @property
    def partitions(self) -> int:
        return len(self._values)

    def append(self, value: bytes, key: bytes | None = None) -> tuple[int, int]:
        """Append one message; returns its ``(partition, offset)``."""
        partition = partition_for(key, self.partitions)
        with self._appended:
            offset = len(self._values[partition])
            self._keys[partition].append(key)
            self._values[partition].append(value)
            self._appended.notify_all()
        return partition, offset

    def extend(self, values: Sequence[bytes], keys: Sequence[bytes | None]) -> None:
        """Append many messages at once (one lock round-trip)."""
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys for {len(values)} values")
        with self._appended:
            if self.partitions == 1:
                self._keys[0].extend(keys)
                self._values[0].extend(values)
            else:
                for key, value in zip(keys, values, strict=True):
                    partition = partition_for(key, self.partitions)
                    self._keys[partition].append(key)
                    self._values[partition].append(value)
            self._appended.notify_all()

    def read(self, partition: int, offset: int, max_records: int) -> list[LogRecord]:
        """Up to ``max_records`` messages of ``partition`` from ``offset`` on."""
        with self._lock:
            keys = self._keys[partition][offset : offset + max_records]
            values = self._values[partition][offset : offset + max_records]
        return [
            LogRecord(partition, offset + j, key, value)
            for j, (key, value) in enumerate(zip(keys, values, strict=True))
        ]

    def end_offsets(self) -> list[int]:
        """The next offset of every partition (its number of messages)."""
        with self._lock:
            return [len(values) for values in self._values]

    def wait_for_records(self, positions: Sequence[int], timeout: float) -> bool:
        """Block until some partition has messages beyond ``positions``, or ``timeout``."""
        with self._appended:
            return self._appended.wait_for(
                lambda: any(
                    len(values) > position
                    for values, position in zip(self._values, positions, strict=True)
                ),
                timeout,
            )


class LogConsumer:
    """Reads a log from given positions, a partition at a time, like one Kafka consumer."""

    def __init__(self, log: InMemoryEventLog, positions: Sequence[int] | None = None) -> None:
        self.log = log
        self.positions = list(positions) if positions is not None else [0] * log.partitions

    def poll(self, max_records: int) -> list[LogRecord]:
        """The next messages, taken from the partitions in turn; advances the positions."""
        records: list[LogRecord] = []
        for partition in range(self.log.partitions):
            want = max_records - len(records)
            if want <= 0:
                break
            chunk = self.log.read(partition, self.positions[partition], want)
            self.positions[partition] += len(chunk)
            records.extend(chunk)
        return records

    def lag(self) -> int:
        """Messages appended but not yet polled."""
        return sum(
            end - position
            for end, position in zip(self.log.end_offsets(), self.positions, strict=True)
        )

    def __iter__(self) -> Iterator[LogRecord]:
        while batch := self.poll(4096):
            yield from batch
