"""``POST /events`` tells the truth while the broker fails, against a real broker of its own
(stopped and started again by the test): 503 means that none of the events was written, then
or later; ``/readyz`` says the broker is down while it is."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys_stream.serving import InMemorySink
from recsys_stream.settings import ApiSettings, KafkaSettings, Settings
from replay.service import ReplayConfig, ensure_topic
from scripts.test_services import LocalKafka, local_kafka
from services.api.app import create_app
from services.publishers import KafkaEventPublisher
from tests.integration.processes import read_events

pytestmark = [pytest.mark.integration, pytest.mark.faults]

KEY = {"X-API-Key": "ingestion-faults-key"}
DOWN_REQUESTS = 20
ANSWER_BOUND_S = 10.0


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalKafka]:
    with local_kafka() as kafka:
        yield kafka


def _events(prefix: str, count: int) -> dict[str, object]:
    return {
        "events": [
            {"user_id": n, "item_id": 100 + n, "rating": 4.0, "event_id": f"{prefix}-{n}"}
            for n in range(count)
        ]
    }


def _publisher_ready(client: TestClient) -> bool:
    return bool(client.get("/readyz").json()["checks"]["publisher"])


def test_post_events_answers_503_only_when_none_was_published(broker: LocalKafka) -> None:
    topic = f"ingest-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic=topic, partitions=3)
    ensure_topic(ReplayConfig(kafka=kafka))
    settings = Settings(kafka=kafka, api=ApiSettings(api_key=SecretStr(KEY["X-API-Key"])))
    publisher = KafkaEventPublisher(settings.kafka, timeout_s=3.0)
    app = create_app(settings, InMemorySink(), publisher)
    with TestClient(app) as client:
        accepted = client.post("/events", json=_events("before", 5), headers=KEY)
        assert accepted.status_code == 202, accepted.text
        assert _publisher_ready(client)

        broker.stop()
        answers = []
        for request in range(DOWN_REQUESTS):
            started = time.monotonic()
            answer = client.post("/events", json=_events(f"down{request}", 3), headers=KEY)
            answers.append((answer.status_code, answer.json()["error"]["code"]))
            assert time.monotonic() - started < ANSWER_BOUND_S
        assert answers == [(503, "publish_failed")] * DOWN_REQUESTS
        assert not _publisher_ready(client)

        broker.start()
        deadline = time.monotonic() + 60
        while not _publisher_ready(client):
            assert time.monotonic() < deadline, "the publisher did not come back"
        accepted = client.post("/events", json=_events("after", 5), headers=KEY)
        assert accepted.status_code == 202, accepted.text

    ids = sorted(event.event_id or "" for _, event in read_events(broker.bootstrap_servers, topic))
    # The refused events were never written, not even once the broker came back.
    assert ids == sorted([f"before-{n}" for n in range(5)] + [f"after-{n}" for n in range(5)])
