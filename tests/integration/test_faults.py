"""The four faults of issue 12, against a real broker: each a test with a bound, counting
events offered, learned, lost and learned twice.

- a checkpoint write that fails commits nothing past the last checkpoint on disk, is retried,
  shows in ``/readyz`` and ``/metrics``, and stops the trainer (exit 1) after its bound;
- a corrupt newest checkpoint is moved aside, the previous one restored, and the group rewound
  to its positions, so the events after it are learned again, once;
- SIGTERM: the final checkpoint, the offsets committed, exit 0 within the bound; the restore
  after it is logged, and the dead-letter counts survive it.

Each trainer learns a few thousand events, so that the whole module stays within a couple of
minutes on two cores. The longer cases (kills in loops, the broker killed) are in
``tests/chaos``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pandas as pd
import pytest
from kafka import KafkaProducer

from recsys_stream.data import generate_synthetic
from recsys_stream.settings import KafkaSettings
from replay.service import ReplayConfig, Replayer
from scripts.trainer_process import TrainerProcess
from services.cli import API_SHUTDOWN_S
from tests.integration.processes import (
    as_latest_small,
    committed_offsets,
    end_offsets,
    read_events,
)

pytestmark = [pytest.mark.integration, pytest.mark.faults]

ROOT = Path(__file__).resolve().parents[2]
FIRST, SECOND = 2_000, 1_000
GIVE_UP_S = 6.0
SHUTDOWN_BOUND_S = 30.0


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return generate_synthetic(FIRST + SECOND, n_users=200, n_items=300, seed=12).ratings


def _topic() -> str:
    return f"faults-{uuid.uuid4().hex[:8]}"


def _replay(servers: str, topic: str, frame: pd.DataFrame) -> None:
    kafka = KafkaSettings(bootstrap_servers=servers, topic=topic, partitions=3)
    summary = Replayer(ReplayConfig(kafka=kafka), "faults").run(frame)
    assert summary.acknowledged == len(frame)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _trainer(servers: str, topic: str, workdir: Path, **settings: str) -> TrainerProcess:
    port = _free_port()
    trainer = TrainerProcess(
        servers,
        topic,
        workdir,
        RECSYS_TRAINER__HTTP_PORT=str(port),
        RECSYS_TRAINER__TAKE_MESSAGES="2",
        RECSYS_KAFKA__ENVELOPE_MAX_EVENTS="100",
        **settings,
    )
    trainer.http = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return trainer


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _metric(exposition: bytes, name: str) -> float:
    values = [
        float(line.rsplit(" ", 1)[1])
        for line in exposition.decode().splitlines()
        if line.startswith(name) and not line.startswith("#")
    ]
    return sum(values)


def test_a_failing_checkpoint_write_commits_nothing_past_the_last_checkpoint(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
) -> None:
    servers, topic = kafka_bootstrap_servers, _topic()
    directory = tmp_path / "checkpoints"
    _replay(servers, topic, ratings.iloc[:FIRST])
    trainer = _trainer(
        servers,
        topic,
        tmp_path,
        RECSYS_TRAINER__CHECKPOINT_PATH=str(directory / "trainer.ckpt"),
        RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="500",
        RECSYS_TRAINER__CHECKPOINT_EVERY_SECONDS="1",
        RECSYS_TRAINER__CHECKPOINT_RETRY_S="0.2",
        RECSYS_TRAINER__CHECKPOINT_GIVE_UP_S=str(GIVE_UP_S),
    )
    trainers.append(trainer)
    trainer.start()
    ends = end_offsets(servers, topic)
    trainer.wait_for(lambda s: s["events_learned"] >= FIRST and s["committed"] == ends)

    # The disk breaks: every write in the checkpoint directory fails from now on.
    directory.rename(tmp_path / "checkpoints.real")
    directory.symlink_to("/dev/full")
    _replay(servers, topic, ratings.iloc[FIRST:])
    failing = trainer.wait_for(
        lambda s: s["checkpoint_failing"] and s["events_learned"] == FIRST + SECOND
    )
    status, body = _get(f"{trainer.http}/readyz")  # type: ignore[attr-defined]
    assert status == 503
    assert orjson.loads(body)["checks"]["checkpoint_ok"] is False
    _, metrics = _get(f"{trainer.http}/metrics")  # type: ignore[attr-defined]
    assert _metric(metrics, "recsys_trainer_checkpoint_failures_total") >= 1

    # It gives up after its bound: exit 1, and nothing past the last checkpoint committed.
    assert trainer.wait_exit(timeout=GIVE_UP_S + SHUTDOWN_BOUND_S) == 1
    committed = committed_offsets(servers, f"trainer-{topic}", topic)
    assert committed == failing["durable"] == ends
    assert not list((tmp_path / "checkpoints.real").glob(".*.tmp"))

    # The disk is back: a new trainer learns the rest, each event once.
    directory.unlink()
    (tmp_path / "checkpoints.real").rename(directory)
    trainer.start()
    ends = end_offsets(servers, topic)
    after = trainer.wait_for(lambda s: s["events_learned"] >= FIRST + SECOND)
    assert after["events_learned"] == after["events_evaluated"] == FIRST + SECOND
    assert after["positions"] == ends


def test_a_corrupt_checkpoint_is_set_aside_and_the_last_good_one_restored(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
) -> None:
    servers, topic = kafka_bootstrap_servers, _topic()
    _replay(servers, topic, ratings.iloc[:FIRST])
    trainer = _trainer(servers, topic, tmp_path, RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="600")
    trainers.append(trainer)
    trainer.start()
    trainer.wait_for(lambda s: s["events_learned"] >= FIRST and s["checkpoint_sequence"] >= 2)
    code, _ = trainer.terminate()
    assert code == 0
    newest = tmp_path / "trainer.ckpt"
    older = sorted(tmp_path.glob("trainer.ckpt.*"), key=lambda p: int(p.suffix[1:]))[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    evidence = newest.read_bytes()
    _replay(servers, topic, ratings.iloc[FIRST:])

    trainer.start()
    ends = end_offsets(servers, topic)
    after = trainer.wait_for(
        lambda s: s["events_learned"] >= FIRST + SECOND and s["positions"] == ends
    )
    assert after["events_learned"] == after["events_evaluated"] == FIRST + SECOND
    assert after["quarantined"] == 1
    assert after["restored_from"] == str(older)
    [kept] = tmp_path.glob("trainer.ckpt.corrupt-*[0-9]")
    assert kept.read_bytes() == evidence
    assert "checksum" in kept.with_name(kept.name + ".reason").read_text()
    log = trainer.log.read_text()
    assert "is unusable" in log
    assert "rewinding" in log
    assert f"restored checkpoint {older}" in log


def test_sigterm_stops_the_trainer_with_a_final_checkpoint_within_its_bound(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
) -> None:
    servers, topic = kafka_bootstrap_servers, _topic()
    _replay(servers, topic, ratings.iloc[:FIRST])
    producer = KafkaProducer(bootstrap_servers=servers)
    for value in (b"{not json", b'{"user_id": 1}', b'{"user_id": 1, "item_id": 2, "rating": 9}'):
        producer.send(topic, value=value, partition=1)
    producer.flush()
    producer.close()
    trainer = _trainer(
        servers,
        topic,
        tmp_path,
        # No checkpoint but the final one.
        RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="1000000",
        RECSYS_TRAINER__CHECKPOINT_EVERY_SECONDS="3600",
    )
    trainers.append(trainer)
    trainer.start()
    trainer.wait_for(lambda s: s["events_learned"] >= FIRST and s["dead_letters"] >= 3)
    code, seconds = trainer.terminate()
    assert code == 0
    assert seconds < SHUTDOWN_BOUND_S
    ends = end_offsets(servers, topic)
    assert committed_offsets(servers, f"trainer-{topic}", topic) == ends
    assert "checkpoint 1 written" in trainer.log.read_text()

    trainer.start()
    restored = trainer.wait_for(lambda s: True)
    assert restored["events_learned"] == FIRST
    assert restored["dead_letters"] == 3
    assert sum(restored["dead_letters_by_code"].values()) == 3
    assert f"restored checkpoint {tmp_path / 'trainer.ckpt'}" in trainer.log.read_text()
    deadline = time.monotonic() + 30
    while True:  # the counters start from the checkpoint's (a deadline loop on the endpoint)
        _, metrics = _get(f"{trainer.http}/metrics")  # type: ignore[attr-defined]
        if _metric(metrics, "recsys_trainer_dead_letters_total") == 3:
            break
        assert time.monotonic() < deadline, metrics.decode()
        time.sleep(0.1)
    _replay(servers, topic, ratings.iloc[FIRST:])
    after = trainer.wait_for(lambda s: s["events_learned"] >= FIRST + SECOND)
    assert after["events_learned"] == FIRST + SECOND


def test_sigterm_stops_the_api_within_its_bound(
    kafka_bootstrap_servers: str, redis_url: str, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers,
        "REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        api = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while _get_or_none(f"http://127.0.0.1:{port}/healthz") != 200:
            assert api.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)  # polling interval of a deadline loop
        started = time.monotonic()
        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=SHUTDOWN_BOUND_S) == 0
        assert time.monotonic() - started < API_SHUTDOWN_S + 5
    finally:
        if api.poll() is None:
            api.kill()
            api.wait()


def test_sigterm_stops_a_replay_that_resumes_exactly(
    kafka_bootstrap_servers: str, ratings: pd.DataFrame, tmp_path: Path
) -> None:
    topic = _topic()
    frame = ratings.iloc[:3000]
    data_root = as_latest_small(frame, tmp_path / "data")
    state = tmp_path / "replay-state.json"
    command = [
        sys.executable, "-m", "services.cli", "replay", "--dataset", "ml-latest-small",
        "--data-dir", str(data_root), "--topic", topic, "--state-file", str(state),
        "--partitions", "3",
    ]  # fmt: skip
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap_servers}
    env["PYTHONPATH"] = str(ROOT)
    replay = subprocess.Popen(
        [*command, "--rate", "1000"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (state.exists() and orjson.loads(state.read_bytes())["next_index"] > 0):
        assert time.monotonic() < deadline
        assert replay.poll() is None
        time.sleep(0.05)  # polling interval of a deadline loop
    started = time.monotonic()
    replay.send_signal(signal.SIGTERM)
    assert replay.wait(timeout=SHUTDOWN_BOUND_S) == 130  # interrupted: resumable
    assert time.monotonic() - started < SHUTDOWN_BOUND_S
    saved = orjson.loads(state.read_bytes())["next_index"]
    assert 0 < saved < len(frame)
    assert len(read_events(kafka_bootstrap_servers, topic)) == saved  # flushed, then saved
    finished = subprocess.run(
        [*command, "--max-speed", "--resume"], cwd=ROOT, env=env, capture_output=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr
    ids = [event.event_id or "" for _, event in read_events(kafka_bootstrap_servers, topic)]
    assert sorted(ids) == sorted(f"ml-latest-small:{i}" for i in range(len(frame)))


def _get_or_none(url: str) -> int | None:
    try:
        return _get(url)[0]
    except OSError:
        return None
