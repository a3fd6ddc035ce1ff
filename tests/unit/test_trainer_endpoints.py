"""The trainer's metrics and HTTP endpoints, without Kafka: a real TrainerCore learns a small
stream, its status feeds the telemetry, and a real HTTP server answers on a free port."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from recsys_stream.data import generate_synthetic
from recsys_stream.events import RatingEvent, encode
from recsys_stream.settings import Settings
from services.trainer.http import Health, TrainerHttpServer
from services.trainer.telemetry import FRESHNESS_BUCKETS, TrainerTelemetry, WeightedHistogram
from services.trainer.worker import Message, TrainerCore


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        trainer={"checkpoint_path": tmp_path / "trainer.ckpt", "sink": "memory"},  # type: ignore[arg-type]
        stream={"batch_size": 250, "window": 200},  # type: ignore[arg-type]
        learner={"retrain": {"every_events": None}, "device": "cpu"},  # type: ignore[arg-type]
    )


@pytest.fixture
def learned(tmp_path: Path) -> tuple[TrainerCore, TrainerTelemetry]:
    """A core that learned 6,000 events (one report published) and one bad message."""
    core = TrainerCore(_settings(tmp_path))
    telemetry = TrainerTelemetry()
    ratings = generate_synthetic(6_000, n_users=60, n_items=120, seed=1).ratings
    rows = ratings.itertuples(index=False)
    messages = [
        Message("ratings", 0, offset, encode(RatingEvent(int(u), int(i), float(r), float(t))), 1.0)
        for offset, (u, i, r, t) in enumerate(rows)
    ]
    messages.append(Message("ratings", 0, len(messages), b"{not json", 1.0))
    for start in range(0, len(messages), 250):
        handled = core.handle(messages[start : start + 250])
        telemetry.batch(
            consumed=len(messages[start : start + 250]),
            dead_letters=[letter.code for letter in handled.dead_letters],
            freshness_s=[0.1, 0.3],
            learned=[handled.learned - handled.learned // 2, handled.learned // 2],
        )
    core.save_checkpoint()
    telemetry.checkpoint_duration.observe(0.2)
    telemetry.update(core.status(), {0: 7, 1: 0})
    return core, telemetry


def _samples(exposition: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def test_the_metrics_report_the_stream_and_the_learner(
    learned: tuple[TrainerCore, TrainerTelemetry],
) -> None:
    core, telemetry = learned
    samples = _samples(telemetry.exposition())
    assert samples[("recsys_trainer_events_consumed_total", ())] == 6_001
    assert samples[("recsys_trainer_events_learned_total", ())] == 6_000
    assert samples[("recsys_trainer_dead_letters_total", (("reason", "invalid_json"),))] == 1
    assert samples[("recsys_trainer_dead_letters_total", (("reason", "missing_field"),))] == 0
    assert samples[("recsys_trainer_freshness_seconds_count", ())] == 6_000
    assert samples[("recsys_trainer_consumer_lag", (("partition", "0"),))] == 7
    assert samples[("recsys_trainer_model_version", ())] == core.processor.learner.version
    assert samples[("recsys_trainer_retrains_total", ())] == 0
    assert samples[("recsys_trainer_checkpoint_duration_seconds_count", ())] == 1
    assert 0 <= samples[("recsys_trainer_checkpoint_age_seconds", ())] < 60
    assert samples[("recsys_trainer_checkpoint_failures_total", ())] == 0
    assert samples[("recsys_trainer_steps_skipped_total", ())] == 0
    report = core.processor.latest_report
    assert report is not None
    hr = report.prequential.models["learner"].overall.hr
    assert samples[("recsys_prequential_hr", (("model", "learner"), ("scope", "all")))] == hr
    assert ("recsys_prequential_hr", (("model", "learner"), ("scope", "window"))) in samples
    assert ("recsys_prequential_rmse", (("model", "learner"), ("scope", "all"))) in samples


def test_the_learning_rate_counts_what_was_learned_recently(
    learned: tuple[TrainerCore, TrainerTelemetry],
) -> None:
    _, telemetry = learned
    assert telemetry.learned_per_second() == 0.0  # one status so far: no interval yet
    fresh = TrainerTelemetry()
    status = learned[0].status()
    fresh.update(status)
    fresh.update(
        status.__class__(**{**status.__dict__, "events_learned": status.events_learned + 500})
    )
    assert fresh.learned_per_second() > 0


@pytest.fixture
def server(
    learned: tuple[TrainerCore, TrainerTelemetry],
) -> Iterator[tuple[TrainerHttpServer, list[Health]]]:
    _, telemetry = learned
    health = [Health(alive=True, checks={"restored": True, "partitions_assigned": True})]
    http = TrainerHttpServer("127.0.0.1", 0, metrics=telemetry.exposition, health=lambda: health[0])
    http.start()
    yield http, health
    http.stop()


def _get(server: TrainerHttpServer, path: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as answer:
            return answer.status, answer.read(), answer.headers["content-type"]
    except urllib.error.HTTPError as error:
        return error.code, error.read(), error.headers["content-type"]


def test_the_endpoints_answer_from_their_own_thread(
    server: tuple[TrainerHttpServer, list[Health]],
) -> None:
    http, health = server
    status, body, kind = _get(http, "/metrics")
    assert status == 200
    assert kind.startswith("text/plain")
    assert b"recsys_trainer_events_learned_total 6000.0" in body
    assert _get(http, "/healthz")[:2] == (200, b'{"status":"ok"}')
    status, body, _ = _get(http, "/readyz")
    assert status == 200
    assert orjson.loads(body)["status"] == "ready"
    health[0] = Health(alive=True, checks={"restored": True, "partitions_assigned": False})
    status, body, _ = _get(http, "/readyz")
    assert status == 503
    assert orjson.loads(body) == {
        "status": "unready",
        "checks": {"restored": True, "partitions_assigned": False},
    }
    health[0] = Health(alive=False, checks={"restored": True})
    assert _get(http, "/healthz")[:2] == (503, b'{"status":"stuck"}')
    assert _get(http, "/nowhere")[0] == 404


def test_freshness_observed_by_message_reads_as_a_histogram_of_every_event() -> None:
    """One observation per message, weighted by its events, exposes the buckets, count and sum
    that prometheus_client's histogram gives for each event observed alone."""
    ages, counts = [0.0, 0.01, 0.012, 0.25, 0.3, 59.0, 61.0, 1e9], [5, 1, 2, 500, 1, 7, 3, 1]
    per_event = Histogram(
        "recsys_trainer_freshness_seconds",
        "Freshness.",
        buckets=FRESHNESS_BUCKETS,
        registry=CollectorRegistry(),
    )
    for age, count in zip(ages, counts, strict=True):
        for _ in range(count):
            per_event.observe(age)
    by_message = WeightedHistogram(
        "recsys_trainer_freshness_seconds", "Freshness.", FRESHNESS_BUCKETS
    )
    by_message.observe(ages[:3], counts[:3])
    by_message.observe(ages[3:], counts[3:])

    def samples(metric: Metric) -> dict[tuple[str, str | None], float]:
        return {
            (sample.name, sample.labels.get("le")): sample.value
            for sample in metric.samples
            if not sample.name.endswith("_created")
        }

    (expected,) = per_event.collect()
    (got,) = by_message.collect()
    assert samples(got) == pytest.approx(samples(expected))
