"""docker-compose.yml's topology runs for real: its trainer, api and replay, started as local
processes with the commands and environment compose gives them (scripts/compose_local.py),
against the test Kafka and Redis. A slice of MovieLens 100K is replayed; the API serves what the
trainer learned from it; both services' /metrics export every metric the Grafana dashboard
queries."""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from recsys_stream.data import load_dataset
from scripts.compose_local import LocalService, compose_up
from tests.deploy.promql import dashboard_metric_names

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "recsys-stream.json"
SLICE = 6_000
"""Events replayed: more than one report (every 5,000 events), so the live figures exist."""
API_KEY = "compose-test-key"


@pytest.fixture(scope="module")
def data_dir() -> Path:
    root = os.environ.get("RECSYS_DATA_DIR")
    if not root or not (Path(root) / "ml-100k").is_dir():
        pytest.skip("RECSYS_DATA_DIR has no ml-100k/ (the compose replay reads MovieLens 100K)")
    return Path(root)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _post(url: str, body: object, key: str) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url,
        data=orjson.dumps(body),
        headers={"X-API-Key": key, "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _metrics(service: LocalService) -> dict[str, float]:
    status, body = _get(service.url("/metrics"))
    assert status == 200, body
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def _learned(trainer: LocalService) -> float:
    return _metrics(trainer).get("recsys_trainer_events_learned_total", 0.0)


def _wait_learned(trainer: LocalService, count: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while _learned(trainer) < count:
        assert time.monotonic() < deadline, f"the trainer learned {_learned(trainer)} of {count}"
        time.sleep(0.2)  # polling interval of a bounded wait


def _wait_ready(service: LocalService, timeout_s: float = 30) -> None:
    """Until ``/readyz`` answers 200: a trainer is ready from its first tick after joining."""
    deadline = time.monotonic() + timeout_s
    while (answer := _get(service.url("/readyz")))[0] != 200:
        assert time.monotonic() < deadline, f"{service.name} not ready: {answer[1]!r}"
        time.sleep(0.2)  # polling interval of a bounded wait


def test_the_compose_topology_learns_and_serves_a_replayed_slice(
    kafka_bootstrap_servers: str, redis_url: str, tmp_path: Path, data_dir: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    # Isolation on shared servers: a topic, a consumer group and a key prefix of this test's
    # own (added to what compose gives, which stays as it is otherwise).
    isolation = {
        "RECSYS_KAFKA__TOPIC": f"compose-{run}",
        "RECSYS_KAFKA__DEAD_LETTER_TOPIC": f"compose-{run}.dead-letter",
        "RECSYS_TRAINER__APP_ID": f"compose-{run}",
        "RECSYS_REDIS__KEY_PREFIX": f"compose-{run}:",
        "RECSYS_DATA_DIR": str(data_dir),
    }
    with compose_up(
        kafka=kafka_bootstrap_servers,
        redis_url=redis_url,
        workdir=tmp_path,
        variables={"RECSYS_API_KEY": API_KEY, "REPLAY_SPEED": "1000000000"},
        extra_arguments={"replay": ["--stop-index", str(SLICE)]},
        extra_environment=dict.fromkeys(("trainer", "api", "replay"), isolation),
    ) as stack:
        assert stack.wait_exit("replay", timeout_s=300) == 0
        trainer, api = stack["trainer"], stack["api"]
        _wait_learned(trainer, SLICE)

        # What the trainer learned is what the API serves, with the dataset's titles.
        ratings = load_dataset("ml-100k", data_dir=data_dir, allow_download=False).ratings
        user = int(ratings.user_id.iloc[SLICE - 1])
        status, body = _get(api.url(f"/users/{user}/recommendations?k=5"))
        assert status == 200, body
        answer = orjson.loads(body)
        assert answer["source"] == "cache"
        assert len(answer["items"]) == 5
        assert all(item["title"] for item in answer["items"])
        status, body = _get(api.url("/metrics/prequential"))
        assert status == 200, body
        assert orjson.loads(body)["events"] >= 5_000
        for service in (api, trainer):
            _wait_ready(service)

        # An event posted to the API reaches the trainer through Kafka.
        posted = {"user_id": user, "item_id": 50, "rating": 5.0}
        status, body = _post(api.url("/events"), posted, API_KEY)
        assert status == 202, body
        _wait_learned(trainer, SLICE + 1)

        # Every metric the dashboard queries is exported by the trainer or the API.
        exported = set(_metrics(trainer)) | set(_metrics(api))
        missing = dashboard_metric_names(DASHBOARD) - exported - {"up"}
        assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"
