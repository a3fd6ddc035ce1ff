"""Helpers shared by the integration tests."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from kafka import KafkaConsumer, TopicPartition

from recsys_stream.data import generate_synthetic, load_dataset
from recsys_stream.events import RatingEvent, decode_message


def first_events(n: int) -> pd.DataFrame:
    """The first ``n`` events of MovieLens 100K when RECSYS_DATA_DIR has it, else of a
    synthetic stream (300 users, 500 items)."""
    root = os.environ.get("RECSYS_DATA_DIR")
    if root and (Path(root) / "ml-100k").is_dir():
        frame = load_dataset("ml-100k", data_dir=Path(root), allow_download=False).ratings
    else:
        frame = generate_synthetic(n, n_users=300, n_items=500, seed=4).ratings
    return frame.iloc[:n].reset_index(drop=True)


def as_latest_small(ratings: pd.DataFrame, data_root: Path) -> Path:
    """Write ``ratings`` as ``data_root/ml-latest-small/`` (its CSV layout, no movies), for a
    replay that reads the dataset from disk; ``data_root`` is returned, for ``--data-dir``."""
    folder = data_root / "ml-latest-small"
    folder.mkdir(parents=True)
    ratings.rename(columns={"user_id": "userId", "item_id": "movieId"}).to_csv(
        folder / "ratings.csv", index=False
    )
    (folder / "movies.csv").write_text("movieId,title,genres\n")
    return data_root


def read_all(servers: str, topic: str) -> list[Any]:
    """Every message of the topic, read to the end offsets (no sleeps: a bounded poll loop)."""
    consumer = KafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            assert time.monotonic() < deadline, "could not read the topic to its end"
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def read_events(servers: str, topic: str) -> list[tuple[int, RatingEvent]]:
    """Every event of the topic with its partition, envelopes opened, in each partition's
    order."""
    return [
        (record.partition, event)
        for record in read_all(servers, topic)
        for event in decode_message(record.value).events
    ]


def end_offsets(servers: str, topic: str) -> dict[str, int]:
    """Each partition's end offset, keyed as the trainer's positions are (``topic/partition``)."""
    consumer = KafkaConsumer(bootstrap_servers=servers)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        ends = consumer.end_offsets(partitions)
    finally:
        consumer.close()
    return {f"{topic}/{tp.partition}": offset for tp, offset in ends.items()}


def committed_offsets(servers: str, group: str, topic: str) -> dict[str, int]:
    """The group's committed offset of each partition (-1: none), keyed as positions are."""
    consumer = KafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    try:
        partitions = sorted(consumer.partitions_for_topic(topic) or ())
        found = {p: consumer.committed(TopicPartition(topic, p)) for p in partitions}
    finally:
        consumer.close()
    return {f"{topic}/{p}": -1 if offset is None else offset for p, offset in found.items()}
