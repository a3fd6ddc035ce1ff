"""The long fault-injection suite (``make chaos``): each case injects a fault into real
processes (a trainer, the API, a broker and a Redis of their own), counts events offered,
learned, lost and learned twice, answers with a 5xx status, and the time to recover, and
records a row of the results table (tests/chaos/conftest.py).

Bounds: every wait has a deadline; the soak runs ``RECSYS_SOAK_S`` seconds (120 by default).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys_stream.data import generate_synthetic
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import ApiSettings, KafkaSettings, Settings
from replay.service import ReplayConfig, ensure_topic
from scripts.test_services import LocalKafka, LocalRedis, local_kafka, local_redis
from scripts.trainer_process import TrainerProcess
from services.api.app import create_app
from services.publishers import KafkaEventPublisher
from tests.chaos.conftest import Row
from tests.integration.processes import end_offsets, read_events
from tests.integration.test_faults import _free_port, _replay, _trainer

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 20_000
SOAK_S = float(os.environ.get("RECSYS_SOAK_S", "120"))
KEY = "chaos-key-5b2e9f"


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return generate_synthetic(EVENTS, n_users=400, n_items=600, seed=7).ratings


def _topic() -> str:
    return f"chaos-{uuid.uuid4().hex[:8]}"


def _outcome(learned: int, offered: int) -> dict[str, Any]:
    return {
        "offered": offered,
        "learned": learned,
        "lost": max(0, offered - learned),
        "twice": max(0, learned - offered),
    }


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)  # polling interval of a deadline loop


# ----------------------------------------------------------------------------- trainer


def test_trainer_sigkill_at_random_points_learns_each_event_once(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
    record: Any,
) -> None:
    servers, topic = kafka_bootstrap_servers, _topic()
    _replay(servers, topic, ratings)
    trainer = _trainer(
        servers,
        topic,
        tmp_path,
        RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="1500",
        RECSYS_TRAINER__CHECKPOINT_EVERY_SECONDS="2",
    )
    trainers.append(trainer)
    rng = random.Random(12)
    kills, recoveries = 0, []
    trainer.start()
    for _ in range(4):
        status = trainer.wait_for(lambda s: True)
        target = status["events_learned"] + rng.randint(500, 3_000)
        if target >= EVENTS:
            break
        trainer.wait_for(lambda s, t=target: s["events_learned"] >= t)  # type: ignore[misc]
        trainer.kill()
        kills += 1
        started = time.monotonic()
        trainer.start()
        trainer.wait_for(lambda s: s["events_learned"] > 0)
        recoveries.append(time.monotonic() - started)
    final = trainer.wait_for(lambda s: s["events_learned"] >= EVENTS)
    assert final["positions"] == end_offsets(servers, topic)
    outcome = _outcome(final["events_learned"], EVENTS)
    slowest = max(recoveries, default=0.0)
    record(Row("trainer SIGKILL at random points", kills, **outcome, recovery_s=slowest,
               note="restart to learning (max)"))  # fmt: skip
    assert outcome["lost"] == outcome["twice"] == 0


def test_trainer_sigkill_during_a_checkpoint_write_leaves_a_restorable_state(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
    record: Any,
) -> None:
    servers, topic = kafka_bootstrap_servers, _topic()
    frame = ratings.iloc[:12_000]
    _replay(servers, topic, frame)
    trainer = _trainer(servers, topic, tmp_path, RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="800")
    trainers.append(trainer)
    caught, recoveries = 0, []
    trainer.start()
    for _ in range(3):
        status = trainer.wait_for(lambda s: True)
        if status["events_learned"] >= len(frame):
            break
        temporary = tmp_path / f".trainer.ckpt.{status['learner_pid']}.tmp"
        deadline = time.monotonic() + 60
        while not temporary.exists():  # busy: a write lasts tens of milliseconds
            if time.monotonic() > deadline or trainer.status().get("events_learned", 0) >= len(
                frame
            ):
                break
        else:
            os.kill(status["learner_pid"], signal.SIGKILL)
            caught += 1
        trainer.kill()
        started = time.monotonic()
        trainer.start()
        trainer.wait_for(lambda s: True)
        recoveries.append(time.monotonic() - started)
    final = trainer.wait_for(lambda s: s["events_learned"] >= len(frame))
    assert not list(tmp_path.glob(".*.tmp"))
    outcome = _outcome(final["events_learned"], len(frame))
    record(Row("SIGKILL during a checkpoint write", caught, **outcome,
               recovery_s=max(recoveries, default=0.0)))  # fmt: skip
    assert caught >= 1
    assert outcome["lost"] == outcome["twice"] == 0


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_the_broker_stopped_or_killed_under_the_trainer(
    how: str, ratings: pd.DataFrame, tmp_path: Path, trainers: list[TrainerProcess], record: Any
) -> None:
    frame = ratings.iloc[:10_000]
    with local_kafka() as broker:
        servers, topic = broker.bootstrap_servers, _topic()
        _replay(servers, topic, frame.iloc[:5_000])
        trainer = _trainer(
            servers,
            topic,
            tmp_path,
            RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="1000",
            RECSYS_TRAINER__KAFKA_WAIT_S="120",
        )
        trainers.append(trainer)
        trainer.start()
        trainer.wait_for(lambda s: s["events_learned"] >= 2_000)
        broker.stop() if how == "stopped" else broker.kill()
        outage = time.monotonic()
        while time.monotonic() - outage < 10:  # the outage lasts 10 s
            time.sleep(0.5)
        broker.start()
        back = time.monotonic()
        restarts = 0
        if trainer.process is not None and trainer.process.poll() is not None:
            restarts += 1  # as Kubernetes would
            trainer.start()
        _replay(servers, topic, frame.iloc[5_000:])
        learned_again = None
        deadline = time.monotonic() + 240
        while True:
            assert time.monotonic() < deadline
            if trainer.process is not None and trainer.process.poll() is not None:
                restarts += 1
                trainer.start()
            status = trainer.status()
            if learned_again is None and status.get("events_learned", 0) > 5_000:
                learned_again = time.monotonic() - back
            if status.get("events_learned", 0) >= len(frame):
                break
            time.sleep(0.1)  # polling interval of a deadline loop
        final = trainer.wait_for(lambda s: s["events_learned"] >= len(frame))
        assert final["positions"] == end_offsets(servers, topic)
    outcome = _outcome(final["events_learned"], len(frame))
    record(Row(f"broker {how} 10 s under the trainer", 1, **outcome, recovery_s=learned_again,
               note=f"trainer restarts: {restarts}"))  # fmt: skip
    assert outcome["lost"] == outcome["twice"] == 0


def test_a_full_checkpoint_filesystem(
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
    record: Any,
) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount)],
                      capture_output=True, check=False).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        servers, topic = kafka_bootstrap_servers, _topic()
        frame = ratings.iloc[:6_000]
        _replay(servers, topic, frame)
        trainer = _trainer(
            servers,
            topic,
            tmp_path,
            RECSYS_TRAINER__CHECKPOINT_PATH=str(mount / "trainer.ckpt"),
            RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS="1000",
            RECSYS_TRAINER__CHECKPOINT_RETRY_S="0.2",
            RECSYS_TRAINER__CHECKPOINT_GIVE_UP_S="5",
        )
        trainers.append(trainer)
        trainer.start()
        code = trainer.wait_exit(timeout=240)  # ENOSPC: the trainer gives up after 5 s
        leftovers = list(mount.glob(".*.tmp"))
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        started = time.monotonic()
        trainer.start()
        final = trainer.wait_for(lambda s: s["events_learned"] >= len(frame))
        recovery = time.monotonic() - started
        assert final["positions"] == end_offsets(servers, topic)
    finally:
        for started_trainer in trainers:
            started_trainer.stop()
        subprocess.run(["umount", "-l", str(mount)], check=False)
    outcome = _outcome(final["events_learned"], len(frame))
    record(Row("checkpoint filesystem full (ENOSPC)", 1, **outcome, recovery_s=recovery,
               note=f"exit {code}, temp files left {len(leftovers)}"))  # fmt: skip
    assert code == 1
    assert not leftovers
    assert outcome["lost"] == outcome["twice"] == 0


# ------------------------------------------------------------------------------ the API


@contextlib.contextmanager
def _api_process(
    servers: str, redis_url: str, workdir: Path, **env: str
) -> Iterator[tuple[str, int]]:
    port = _free_port()
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": servers,
        "REDIS_URL": redis_url,
        "RECSYS_API__API_KEY": KEY,
        "RECSYS_API__EVENTS_RATE_PER_S": "0",
        "PYTHONPATH": str(ROOT),
        **env,
    }
    log = workdir / f"api-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "api", "--port", str(port)],
            cwd=ROOT, env=environment, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _status(f"{url}/healthz") == 200, 60, "the API")
        yield url, process.pid
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(url: str, timeout: float) -> None:
    """Until the API's ``/readyz`` answers 200; on a timeout, say which checks failed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = httpx.get(f"{url}/readyz", timeout=5)
        except httpx.HTTPError as exc:
            last = repr(exc)
        else:
            if answer.status_code == 200:
                return
            last = answer.text
        assert time.monotonic() < deadline, f"the API is not ready: {last}"
        time.sleep(0.05)  # polling interval of a deadline loop


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


class Load:
    """Requests in a thread until stopped: GET recommendations for known users, counted by
    status."""

    def __init__(self, url: str, users: list[int]) -> None:
        self.url, self.users = url, users
        self.statuses: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(3)
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                user = rng.choice(self.users)
                try:
                    answer = client.get(f"{self.url}/users/{user}/recommendations?k=10")
                    self.statuses[answer.status_code] += 1
                except httpx.HTTPError:
                    self.statuses[0] += 1

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    @property
    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500 or status == 0)


@pytest.mark.parametrize("fault", ["flushed", "restarted", "stopped"])
def test_redis_flushed_restarted_or_stopped_under_the_trainer_and_the_api(
    fault: str,
    kafka_bootstrap_servers: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
    record: Any,
) -> None:
    frame = ratings.iloc[:8_000]
    with local_redis() as redis_server:
        servers, topic = kafka_bootstrap_servers, _topic()
        _replay(servers, topic, frame.iloc[:4_000])
        trainer = _trainer(servers, topic, tmp_path, RECSYS_TRAINER__SINK="redis",
                           REDIS_URL=redis_server.url,
                           RECSYS_REDIS__KEY_PREFIX="recsys:")  # fmt: skip
        trainers.append(trainer)
        trainer.start()
        trainer.wait_for(lambda s: s["events_learned"] >= 4_000)
        users = sorted({int(u) for u in frame["user_id"].iloc[:4_000]})[:100]
        with _api_process(servers, redis_server.url, tmp_path, RECSYS_KAFKA__TOPIC=topic) as (
            url,
            _,
        ):
            _wait_ready(url, 60)
            with Load(url, users) as load:
                _wait(lambda: sum(load.statuses.values()) > 200, 60, "load")
                if fault == "flushed":
                    _flush(redis_server)
                elif fault == "restarted":
                    redis_server.kill()
                    redis_server.start()
                else:
                    redis_server.stop()  # down for 10 s while the stream goes on
                outage = time.monotonic()
                _replay(servers, topic, frame.iloc[4_000:])
                restarts = 0
                if fault == "stopped":
                    while time.monotonic() - outage < 10:  # the outage lasts 10 s
                        if trainer.process is not None and trainer.process.poll() is not None:
                            restarts += 1  # as Kubernetes would
                            trainer.start()
                        time.sleep(0.5)
                    redis_server.start()
                back = time.monotonic()
                if trainer.process is not None and trainer.process.poll() is not None:
                    restarts += 1
                    trainer.start()
                final = trainer.wait_for(lambda s: s["events_learned"] >= len(frame))
                _wait_ready(url, 120)
                recovery = time.monotonic() - back
                _wait(lambda: sum(load.statuses.values()) > 1_000, 120, "more load")
    outcome = _outcome(final["events_learned"], len(frame))
    record(Row(f"Redis {fault} under trainer and api", 1, **outcome, errors_5xx=load.errors,
               recovery_s=recovery,
               note=f"{sum(load.statuses.values()):,} GETs, until /readyz again; "
                    f"trainer restarts: {restarts}"))  # fmt: skip
    assert outcome["lost"] == outcome["twice"] == 0
    assert load.errors == 0, load.statuses


def _flush(redis_server: LocalRedis) -> None:
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()


@pytest.mark.parametrize("fault", ["stopped", "killed", "frozen"])
def test_post_events_under_load_while_the_broker_fails(fault: str, record: Any) -> None:
    with local_kafka() as broker:
        topic = f"ingest-{uuid.uuid4().hex[:8]}"
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic=topic)
        ensure_topic(ReplayConfig(kafka=kafka))
        settings = Settings(
            kafka=kafka, api=ApiSettings(api_key=SecretStr(KEY), events_rate_per_s=0)
        )
        app = create_app(settings, InMemorySink(), KafkaEventPublisher(kafka, timeout_s=3.0))
        answers: dict[str, list[str]] = {"202": [], "503": [], "504": [], "other": []}
        with TestClient(app) as client:
            faulted = back = recovered = None
            for request in range(150):
                if request == 50:
                    _break(broker, fault)
                    faulted = time.monotonic()
                if request == 100:
                    _mend(broker, fault)
                    back = time.monotonic()
                ids = [f"r{request}-{n}" for n in range(4)]
                body = {"events": [{"user_id": n, "item_id": 7, "rating": 4.0, "event_id": i}
                                   for n, i in enumerate(ids)]}  # fmt: skip
                answer = client.post("/events", json=body, headers={"X-API-Key": KEY})
                bucket = str(answer.status_code) if str(answer.status_code) in answers else "other"
                answers[bucket].extend(ids)
                if back is not None and recovered is None and answer.status_code == 202:
                    recovered = time.monotonic() - back
            del faulted
        written = Counter(e.event_id for _, e in read_events(broker.bootstrap_servers, topic))
    accepted = set(answers["202"])
    lied = [i for i in answers["503"] if written[i]]  # 503 said none was written
    lost = [i for i in accepted if not written[i]]
    twice = [i for i, n in written.items() if n > 1]
    record(Row(f"POST /events, broker {fault}", 150, offered=len(accepted), learned=None,
               lost=len(lost), twice=len(twice), errors_5xx=len(answers["503"]) // 4
               + len(answers["504"]) // 4, recovery_s=recovered,
               note=f"503 that lied: {len(lied) // 4}; 504: {len(answers['504']) // 4}; "
               f"other: {len(answers['other']) // 4}"))  # fmt: skip
    assert not lied
    assert not lost
    assert not twice
    assert not answers["other"]


def _break(broker: LocalKafka, fault: str) -> None:
    if fault == "stopped":
        broker.stop()
    elif fault == "killed":
        broker.kill()
    else:
        assert broker.pid is not None
        os.killpg(broker.pid, signal.SIGSTOP)


def _mend(broker: LocalKafka, fault: str) -> None:
    if fault == "frozen":
        assert broker.pid is not None
        os.killpg(broker.pid, signal.SIGCONT)
    else:
        broker.start()


# ---------------------------------------------------------------------------------- soak


def _rss_and_fds(pid: int) -> tuple[int, int]:
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def test_soak_the_api_under_load_and_the_trainer_under_a_steady_stream(
    kafka_bootstrap_servers: str,
    redis_url: str,
    ratings: pd.DataFrame,
    tmp_path: Path,
    trainers: list[TrainerProcess],
    record: Any,
) -> None:
    servers, topic = kafka_bootstrap_servers, _topic()
    _replay(servers, topic, ratings.iloc[:2_000])
    trainer = _trainer(servers, topic, tmp_path, RECSYS_TRAINER__SINK="redis",
                       REDIS_URL=redis_url, RECSYS_REDIS__KEY_PREFIX="recsys:")  # fmt: skip
    trainers.append(trainer)
    trainer.start()
    status = trainer.wait_for(lambda s: s["events_learned"] >= 2_000)
    users = sorted({int(u) for u in ratings["user_id"].iloc[:2_000]})[:100]
    samples: dict[str, list[tuple[int, int]]] = {"api": [], "trainer": [], "learner": []}
    offered = 2_000
    with _api_process(servers, redis_url, tmp_path, RECSYS_KAFKA__TOPIC=topic) as (url, api_pid):
        with Load(url, users) as load, httpx.Client(base_url=url, timeout=10) as client:
            started = time.monotonic()
            next_sample = started
            n = 0
            while time.monotonic() - started < SOAK_S:
                events = [{"user_id": users[(n + k) % len(users)], "item_id": (n + k) % 500,
                           "rating": 4.0} for k in range(10)]  # fmt: skip
                answer = client.post("/events", json={"events": events},
                                     headers={"X-API-Key": KEY})  # fmt: skip
                if answer.status_code == 202:
                    offered += 10
                n += 10
                if time.monotonic() >= next_sample:
                    next_sample += 5
                    assert trainer.process is not None
                    for name, pid in (("api", api_pid), ("trainer", trainer.process.pid),
                                      ("learner", status["learner_pid"])):  # fmt: skip
                        samples[name].append(_rss_and_fds(pid))
                time.sleep(0.02)  # a steady stream: ~500 events/s
        final = trainer.wait_for(lambda s: s["events_learned"] >= offered, timeout=120)
    growth = {}
    for name, series in samples.items():
        warm = series[len(series) // 4]
        growth[name] = (max(r for r, _ in series) - warm[0], max(f for _, f in series) - warm[1])
    note = "; ".join(f"{name} RSS +{rss / 1e6:.0f} MB, fds +{fds}"
                     for name, (rss, fds) in growth.items())  # fmt: skip
    outcome = _outcome(final["events_learned"], offered)
    record(Row(f"soak {SOAK_S:.0f} s (api load + steady stream)", 1, **outcome,
               errors_5xx=load.errors, note=note))  # fmt: skip
    assert outcome["lost"] == outcome["twice"] == 0
    assert load.errors == 0
    for name, (rss, fds) in growth.items():
        assert rss < 150e6, (name, rss)
        assert fds < 30, (name, fds)
