"""The Redis cache against a real Redis server: round trips, versioned snapshots, outages."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import numpy as np
import pytest

from recsys_stream.report import StreamReport
from recsys_stream.serving import (
    CacheUnavailableError,
    DeadLetter,
    ModelSnapshot,
    UserRecommendations,
    UserState,
)
from recsys_stream.settings import RedisSettings
from services.cache.redis_cache import RedisCache
from tests.reports import make_report

pytestmark = pytest.mark.integration


@pytest.fixture
def cache(redis_url: str) -> RedisCache:
    return RedisCache(RedisSettings(url=redis_url, key_prefix=f"test-{uuid.uuid4().hex[:8]}:"))


def _snapshot(version: int, n: int = 5) -> ModelSnapshot:
    rng = np.random.default_rng(version)
    return ModelSnapshot(
        version=version,
        created_at=1000.0 + version,
        item_ids=np.arange(100, 100 + n),
        item_vectors=rng.normal(size=(n, 4)).astype(np.float32),
        item_offsets=np.zeros(n, np.float32),
        popular=np.arange(100, 100 + n),
        trending=np.arange(100 + n - 1, 99, -1),
    )


def test_lists_and_states_round_trip_with_expiry(cache: RedisCache) -> None:
    entry = UserRecommendations(7, [101, 102], [0.5, 0.25], 3, 1234.5)
    state = UserState(7, np.ones(4, np.float32), np.array([100]), 3)
    cache.publish_recommendations([entry], [state])
    assert asyncio.run(cache.top_k(7)) == entry
    restored = asyncio.run(cache.user_state(7))
    assert restored is not None
    np.testing.assert_array_equal(restored.vector, state.vector)
    assert restored.seen.tolist() == [100]
    assert asyncio.run(cache.top_k(8)) is None
    ttl = cache.client.ttl(cache._key("topk", 7))
    assert 0 < ttl <= cache.settings.top_k_ttl_s


def test_a_reader_always_gets_a_whole_snapshot_of_the_latest_version(cache: RedisCache) -> None:
    assert cache.snapshot() is None
    cache.publish_snapshot(_snapshot(1))
    first_key = cache.snapshot_name()
    cache.publish_snapshot(_snapshot(2))
    current = cache.snapshot()
    assert current is not None
    assert current.version == 2
    np.testing.assert_array_equal(current.item_vectors, _snapshot(2).item_vectors)
    # The replaced snapshot stays readable for a while, then expires.
    assert first_key is not None
    assert 0 < cache.client.ttl(first_key) <= 600


def _published(events: int) -> StreamReport:
    report = make_report().stream
    prequential = dataclasses.replace(report.prequential, events=events)
    return dataclasses.replace(report, prequential=prequential, published_at=float(events))


def test_metrics_and_series_and_dead_letters(cache: RedisCache) -> None:
    for events in (100, 200, 300):
        cache.publish_metrics(_published(events))
    latest = cache.metrics()
    assert latest == _published(300).live()
    assert latest is not None
    assert latest.models["learner"].hr_window == pytest.approx(0.2 * (1 + 9 / 20))
    assert cache.metrics_series(2) == [_published(200).point(), _published(300).point()]
    cache.publish_dead_letters([DeadLetter(b"\xff{", "not valid JSON", "t/0@5")])
    [letter] = cache.dead_letters()
    assert letter["reason"] == "not valid JSON"
    assert letter["source"] == "t/0@5"


def test_an_unreachable_redis_fails_reads_clearly_and_never_breaks_writes() -> None:
    down = RedisCache(RedisSettings(url="redis://127.0.0.1:9/0", socket_timeout_s=0.5))
    assert down.ping() is False
    with pytest.raises(CacheUnavailableError, match="Redis unavailable"):
        asyncio.run(down.top_k(1))
    with pytest.raises(CacheUnavailableError):
        down.snapshot()
    # The trainer keeps learning: publishing logs a warning and returns.
    down.publish_recommendations([UserRecommendations(1, [2], [0.1], 1, 0.0)], [])
    down.publish_snapshot(_snapshot(1))
    down.publish_metrics(_published(1))
