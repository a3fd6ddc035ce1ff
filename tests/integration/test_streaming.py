"""The streaming path against a real Kafka broker: replay, trainer, dead letters, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from kafka import KafkaConsumer, KafkaProducer
from typer.testing import CliRunner

from recsys_stream.settings import KafkaSettings
from replay.service import ReplayConfig, Replayer, ensure_topic
from scripts.trainer_process import TrainerProcess
from services.cli import app
from services.topics import BrokerUnavailableError, partition_of
from tests.integration.processes import (
    as_latest_small,
    end_offsets,
    first_events,
    read_all,
    read_events,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
EVENTS = 20_000


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return first_events(EVENTS)


def _topic() -> str:
    return f"ratings-{uuid.uuid4().hex[:8]}"


def _config(servers: str, topic: str, partitions: int = 3, **run: Any) -> ReplayConfig:
    kafka = KafkaSettings(bootstrap_servers=servers, topic=topic, partitions=partitions)
    return ReplayConfig(kafka=kafka, **run)


def _replay(
    servers: str, topic: str, frame: pd.DataFrame, state: Path | None = None, **options: Any
) -> Any:
    return Replayer(_config(servers, topic, state_file=state, **options), "test").run(frame)


def test_the_trainer_learns_every_replayed_event(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
) -> None:
    topic = _topic()
    summary = _replay(kafka_bootstrap_servers, topic, ratings, partitions=3)
    assert summary.sent == summary.acknowledged == EVENTS
    trainer = TrainerProcess(kafka_bootstrap_servers, topic, tmp_path)
    trainers.append(trainer)
    trainer.start()
    status = trainer.wait_for(lambda s: s["events_learned"] >= EVENTS)
    assert status["events_learned"] == EVENTS
    assert status["events_evaluated"] == EVENTS
    # Every message consumed: each partition's position is its end offset.
    assert status["positions"] == end_offsets(kafka_bootstrap_servers, topic)
    trainer.stop()
    assert trainer.process is not None
    assert trainer.process.returncode == 0


def test_a_trainer_killed_mid_stream_learns_every_event_exactly_once(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
) -> None:
    topic = _topic()
    _replay(kafka_bootstrap_servers, topic, ratings, partitions=3)
    trainer = TrainerProcess(
        kafka_bootstrap_servers,
        topic,
        tmp_path,
        RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="3000",
        # Small takes of envelopes, so that the status moves (and the kill lands) mid-stream.
        RECSYS_TRAINER__TAKE_MESSAGES="2",
    )
    trainers.append(trainer)
    trainer.start()
    before = trainer.wait_for(lambda s: s["events_learned"] >= 7_000)
    trainer.kill()
    assert before["events_learned"] < EVENTS, "the stream was over before the kill"
    trainer.start()
    after = trainer.wait_for(lambda s: s["events_learned"] >= EVENTS)
    # Learned once each: the count stops exactly at the number of events, and each partition's
    # position is its end offset.
    assert after["events_learned"] == EVENTS
    assert after["events_evaluated"] == EVENTS
    assert after["positions"] == end_offsets(kafka_bootstrap_servers, topic)


def test_malformed_messages_go_to_the_dead_letter_topic(
    kafka_bootstrap_servers: str, tmp_path: Path, trainers: list[TrainerProcess]
) -> None:
    topic = _topic()
    ensure_topic(_config(kafka_bootstrap_servers, topic))
    good = [
        orjson.dumps({"user_id": u, "item_id": 10 + u % 7, "rating": 4.0, "timestamp": 1000 + u})
        for u in range(50)
    ]
    bad = [
        b"{not json",
        b'{"user_id": 1, "item_id": 2}',
        b'{"user_id": -1, "item_id": 2, "rating": 4, "timestamp": 1}',
        b'{"user_id": 1, "item_id": 2, "rating": 99, "timestamp": 1}',
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    for n, payload in enumerate(good[:25] + bad + good[25:]):
        producer.send(topic, value=payload, key=b"k", partition=n % 3)
    producer.flush()
    producer.close()
    trainer = TrainerProcess(kafka_bootstrap_servers, topic, tmp_path)
    trainers.append(trainer)
    trainer.start()
    status = trainer.wait_for(lambda s: s["events_learned"] >= 50 and s["dead_letters"] >= 4)
    assert status["events_learned"] == 50
    assert status["dead_letters"] == 4
    letters = read_all(kafka_bootstrap_servers, f"{topic}.dead-letter")
    assert sorted(record.value for record in letters) == sorted(bad)
    reasons = [dict(record.headers)["reason"].decode() for record in letters]
    assert any("not valid JSON" in reason for reason in reasons)
    assert any("missing required field" in reason for reason in reasons)
    assert any("rating: must be between" in reason for reason in reasons)
    assert all(dict(record.headers)["source"].startswith(topic.encode()) for record in letters)


def test_a_replay_killed_and_resumed_sends_every_event_exactly_once(
    kafka_bootstrap_servers: str, ratings: pd.DataFrame, tmp_path: Path
) -> None:
    topic = _topic()
    frame = ratings.iloc[:6000]
    data_root = as_latest_small(frame, tmp_path / "data")
    state = tmp_path / "replay-state.json"
    command = [
        sys.executable,
        "-m",
        "services.cli",
        "replay",
        "--dataset",
        "ml-latest-small",
        "--data-dir",
        str(data_root),
        "--topic",
        topic,
        "--state-file",
        str(state),
        "--partitions",
        "3",
    ]
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [*command, "--rate", "2000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (state.exists() and orjson.loads(state.read_bytes())["next_index"] > 0):
        assert time.monotonic() < deadline
        assert process.poll() is None
        time.sleep(0.05)  # polling interval of a deadline loop
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert orjson.loads(state.read_bytes())["next_index"] < len(frame)
    finished = subprocess.run(
        [*command, "--max-speed", "--resume"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    ids = [event.event_id for _, event in read_events(kafka_bootstrap_servers, topic)]
    assert len(ids) == len(set(ids)) == len(frame)
    assert set(ids) == {f"ml-latest-small:{i}" for i in range(len(frame))}


@pytest.mark.parametrize("envelope_max_events", [1, 500])
def test_replay_sends_each_user_to_their_partition_in_order(
    kafka_bootstrap_servers: str, ratings: pd.DataFrame, envelope_max_events: int
) -> None:
    topic = _topic()
    frame = ratings.iloc[:3000]
    kafka = KafkaSettings(
        bootstrap_servers=kafka_bootstrap_servers,
        topic=topic,
        partitions=4,
        envelope_max_events=envelope_max_events,
    )
    summary = Replayer(ReplayConfig(kafka=kafka), "test").run(frame)
    records = read_all(kafka_bootstrap_servers, topic)
    assert len(records) == summary.messages
    if envelope_max_events == 1:
        assert summary.messages == len(frame)  # one event per message, as any producer sends
    else:
        assert summary.messages < len(frame) / 50
    by_user: dict[int, list[tuple[int, int]]] = {}
    for partition, event in read_events(kafka_bootstrap_servers, topic):
        assert partition == partition_of(str(event.user_id).encode(), 4)
        assert event.event_id is not None
        index = int(event.event_id.split(":")[1])
        by_user.setdefault(event.user_id, []).append((partition, index))
    assert sum(len(placed) for placed in by_user.values()) == len(frame)
    for user, placed in by_user.items():
        indexes = [index for _, index in placed]
        assert indexes == sorted(indexes), user


def test_bad_rows_are_counted_and_never_sent(
    kafka_bootstrap_servers: str, ratings: pd.DataFrame
) -> None:
    topic = _topic()
    frame = ratings.iloc[:100].copy()
    frame.loc[5, "rating"] = 9.0
    frame.loc[7, "user_id"] = -3
    summary = _replay(kafka_bootstrap_servers, topic, frame, partitions=1)
    assert summary.skipped_bad_rows == 2
    assert summary.sent == 98
    assert len(read_events(kafka_bootstrap_servers, topic)) == 98


def test_an_unreachable_broker_is_a_clear_error_after_a_bounded_wait() -> None:
    config = ReplayConfig(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9", topic="t", connect_timeout_s=2)
    )
    started = time.monotonic()
    with pytest.raises(BrokerUnavailableError, match=r"cannot reach Kafka at 127\.0\.0\.1:9"):
        ensure_topic(config)
    assert time.monotonic() - started < 30


def test_produce_sends_one_event(kafka_bootstrap_servers: str, monkeypatch) -> None:
    topic = _topic()
    ensure_topic(_config(kafka_bootstrap_servers, topic))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap_servers)
    result = CliRunner().invoke(
        app, ["produce", "--user", "1", "--item", "50", "--rating", "5", "--topic", topic]
    )
    assert result.exit_code == 0, result.output
    [record] = read_all(kafka_bootstrap_servers, topic)
    event = orjson.loads(record.value)
    assert (event["user_id"], event["item_id"], event["rating"], event["source"]) == (
        1,
        50,
        5.0,
        "cli",
    )


def test_a_replay_stopped_like_ctrl_c_and_resumed_sends_every_event_exactly_once(
    kafka_bootstrap_servers: str, ratings: pd.DataFrame, tmp_path: Path
) -> None:
    topic = _topic()
    frame = ratings.iloc[:5000]
    state = tmp_path / "state.json"
    config = _config(kafka_bootstrap_servers, topic, state_file=state)
    first = Replayer(config, "test")

    def stop_midway(sent: int, _: float) -> None:
        if sent >= 1_500:
            first.stop()  # what Ctrl-C does: stop after flushing what was sent

    interrupted = first.run(frame, on_progress=stop_midway)
    assert interrupted.interrupted
    assert interrupted.sent == interrupted.acknowledged < len(frame)
    resumed = Replayer(
        _config(kafka_bootstrap_servers, topic, state_file=state, resume=True),
        "test",
    ).run(frame)
    assert interrupted.sent + resumed.sent == len(frame)
    ids = [event.event_id or "" for _, event in read_events(kafka_bootstrap_servers, topic)]
    assert sorted(ids) == sorted(f"test:{i}" for i in range(len(frame)))


def test_a_trainer_started_before_its_topic_exists_learns_what_comes_later(
    kafka_bootstrap_servers: str, tmp_path: Path, trainers: list[TrainerProcess]
) -> None:
    topic = _topic()
    trainer = TrainerProcess(kafka_bootstrap_servers, topic, tmp_path, RECSYS_KAFKA__PARTITIONS="4")
    trainers.append(trainer)
    trainer.start()
    trainer.wait_for(lambda s: True)  # up, subscribed: the trainer declared its topics
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap_servers)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2, 3}
        assert consumer.partitions_for_topic(f"{topic}.dead-letter") == {0, 1, 2, 3}
    finally:
        consumer.close()
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    for n in range(1_000):
        event = {"user_id": n % 40, "item_id": n % 90, "rating": 4.0, "timestamp": n}
        producer.send(topic, value=orjson.dumps(event), key=str(n % 40).encode())
    producer.flush()
    producer.close()
    status = trainer.wait_for(lambda s: s["events_learned"] >= 1_000)
    assert status["events_learned"] == 1_000


def test_the_invalid_events_of_an_envelope_go_to_the_dead_letter_topic_with_their_index(
    kafka_bootstrap_servers: str, tmp_path: Path, trainers: list[TrainerProcess]
) -> None:
    topic = _topic()
    ensure_topic(_config(kafka_bootstrap_servers, topic))
    elements: list[object] = [
        {"user_id": n % 9, "item_id": 20 + n % 11, "rating": 4.0, "timestamp": 100 + n}
        for n in range(40)
    ]
    elements[7] = {"user_id": 1, "item_id": 2, "rating": 0.1, "timestamp": 1}
    elements[31] = "not an event"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap_servers)
    producer.send(topic, value=orjson.dumps({"version": 1, "events": elements}), partition=0)
    producer.send(topic, value=b'{"version": 1, "events": [', partition=1)
    producer.flush()
    producer.close()
    trainer = TrainerProcess(kafka_bootstrap_servers, topic, tmp_path)
    trainers.append(trainer)
    trainer.start()
    status = trainer.wait_for(lambda s: s["events_learned"] >= 38 and s["dead_letters"] >= 3)
    assert (status["events_learned"], status["dead_letters"]) == (38, 3)
    letters = {
        dict(record.headers).get("index", b"-"): record
        for record in read_all(kafka_bootstrap_servers, f"{topic}.dead-letter")
    }
    assert set(letters) == {b"7", b"31", b"-"}
    assert orjson.loads(letters[b"7"].value)["rating"] == 0.1
    assert dict(letters[b"7"].headers)["code"] == b"invalid_field"
    assert dict(letters[b"31"].headers)["code"] == b"not_an_object"
    assert letters[b"-"].value == b'{"version": 1, "events": ['
    assert dict(letters[b"-"].headers)["code"] == b"invalid_json"
