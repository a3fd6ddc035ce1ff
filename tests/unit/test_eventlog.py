"""The embedded event log: partitioning by key, offsets, and consumption order."""

import threading

import pytest

from recsys_stream.events import InMemoryEventLog, LogConsumer, partition_for


def test_a_key_always_maps_to_the_same_partition() -> None:
    assert partition_for(b"42", 8) == partition_for(b"42", 8)
    assert {partition_for(str(user).encode(), 4) for user in range(100)} == {0, 1, 2, 3}


def test_consumer_reads_each_partition_in_offset_order() -> None:
    log = InMemoryEventLog(partitions=3)
    for user in range(20):
        for n in range(5):
            log.append(f"{user}:{n}".encode(), key=str(user).encode())
    consumer = LogConsumer(log)
    seen: dict[str, list[int]] = {}
    while records := consumer.poll(7):
        for record in records:
            user_key, index = record.value.decode().split(":")
            seen.setdefault(user_key, []).append(int(index))
    assert seen == {str(user): [0, 1, 2, 3, 4] for user in range(20)}
    assert consumer.lag() == 0
    assert sum(log.end_offsets()) == 100


def test_a_consumer_resumes_from_its_positions() -> None:
    log = InMemoryEventLog(partitions=1)
    log.extend([b"a", b"b", b"c"], [None, None, None])
    first = LogConsumer(log)
    assert [r.value for r in first.poll(2)] == [b"a", b"b"]
    resumed = LogConsumer(log, positions=first.positions)
    assert [r.value for r in resumed] == [b"c"]


def test_wait_for_records_wakes_up_on_append() -> None:
    log = InMemoryEventLog()
    appended = threading.Event()

    def produce() -> None:
        appended.wait()
        log.append(b"x")

    producer = threading.Thread(target=produce)
    producer.start()
    assert not log.wait_for_records([0], timeout=0.01)
    appended.set()
    assert log.wait_for_records([0], timeout=10)
    producer.join()


def test_a_log_needs_a_partition() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        InMemoryEventLog(partitions=0)


@pytest.mark.parametrize("partitions", [1, 3])
def test_records_read_back_with_their_coordinates_however_they_were_appended(
    partitions: int,
) -> None:
    log = InMemoryEventLog(partitions=partitions)
    keys = [str(user).encode() for user in (1, 2, 1, 3, 2, 1)]
    log.extend([b"v0", b"v1", b"v2"], keys[:3])
    for j in range(3, 6):
        log.append(f"v{j}".encode(), key=keys[j])
    for partition in range(partitions):
        records = log.read(partition, 0, 10)
        assert [r.offset for r in records] == list(range(len(records)))
        assert all(r.partition == partition for r in records)
        assert all(partition_for(r.key, partitions) == partition for r in records)
        assert [r.value for r in log.read(partition, 1, 1)] == [r.value for r in records[1:2]]
    assert sorted(r.value for r in LogConsumer(log)) == [f"v{j}".encode() for j in range(6)]


def test_a_ragged_extend_is_refused_and_appends_nothing() -> None:
    log = InMemoryEventLog(partitions=1)
    with pytest.raises(ValueError, match="2 keys for 3 values"):
        log.extend([b"a", b"b", b"c"], [None, None])
    assert log.end_offsets() == [0]
