"""The full loop on real services: POST /events -> Kafka -> trainer -> Redis -> GET."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys_stream.data import generate_synthetic
from recsys_stream.settings import ApiSettings, KafkaSettings, RedisSettings, Settings
from replay.service import ReplayConfig, Replayer
from scripts.trainer_process import TrainerProcess
from services.api.app import create_app
from services.cache.redis_cache import RedisCache
from services.publishers import KafkaEventPublisher

pytestmark = pytest.mark.integration
KEY = "test-key"


def _settings(servers: str, redis_url: str, topic: str) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=servers, topic=topic),
        redis=RedisSettings(url=redis_url, key_prefix=f"{topic}:"),
        api=ApiSettings(api_key=SecretStr(KEY)),
    )


def test_posted_events_change_the_users_recommendations(
    kafka_bootstrap_servers: str, redis_url: str, tmp_path: Path, trainers: list[TrainerProcess]
) -> None:
    topic = f"loop-{uuid.uuid4().hex[:8]}"
    history = generate_synthetic(3_000, n_users=100, n_items=200, seed=9).ratings
    kafka = KafkaSettings(bootstrap_servers=kafka_bootstrap_servers, topic=topic)
    Replayer(ReplayConfig(kafka=kafka), "warmup").run(history)
    trainer = TrainerProcess(kafka_bootstrap_servers, topic, tmp_path)
    trainers.append(trainer)
    trainer.start()
    trainer.wait_for(lambda s: s["events_learned"] >= len(history))
    settings = _settings(kafka_bootstrap_servers, redis_url, topic)
    app = create_app(settings, RedisCache(settings.redis), KafkaEventPublisher(settings.kafka))
    newcomer = 900_000
    with TestClient(app) as client:
        before = client.get(f"/users/{newcomer}/recommendations", params={"k": 10})
        assert before.status_code == 200, before.text
        assert before.json()["source"] == "cold_start"
        rated = [int(i) for i in history.item_id.value_counts().index[:3]]
        events = [
            {"user_id": newcomer, "item_id": item, "rating": 5, "timestamp": time.time()}
            for item in rated
        ]
        # Auth is enforced on the real app too.
        assert client.post("/events", json={"events": events}).status_code == 401
        assert (
            client.post(
                "/events", json={"events": events}, headers={"X-API-Key": "wrong"}
            ).status_code
            == 403
        )
        accepted = client.post("/events", json={"events": events}, headers={"X-API-Key": KEY})
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["accepted"] == 3
        trainer.wait_for(lambda s: s["events_learned"] >= len(history) + 3)
        deadline = time.monotonic() + 60
        while True:
            after = client.get(f"/users/{newcomer}/recommendations", params={"k": 10}).json()
            if after["source"] == "cache":
                break
            assert time.monotonic() < deadline, after
            time.sleep(0.05)  # polling interval of a deadline loop
    listed = [item["item_id"] for item in after["items"]]
    assert len(listed) == 10
    assert not set(rated) & set(listed)  # what the user rated is not recommended again
    assert listed != [item["item_id"] for item in before.json()["items"]]


def test_events_answer_503_when_kafka_is_down(redis_url: str) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9", topic="t"),
        redis=RedisSettings(url=redis_url, key_prefix=f"down-{uuid.uuid4().hex[:6]}:"),
        api=ApiSettings(api_key=SecretStr(KEY)),
    )
    publisher = KafkaEventPublisher(settings.kafka, timeout_s=2.0)
    app = create_app(settings, RedisCache(settings.redis), publisher)
    with TestClient(app) as client:
        started = time.monotonic()
        answer = client.post(
            "/events",
            json={"user_id": 1, "item_id": 2, "rating": 4, "timestamp": 1},
            headers={"X-API-Key": KEY},
        )
        assert answer.status_code == 503
        assert "Kafka" in answer.json()["error"]["message"]
        assert time.monotonic() - started < 20
