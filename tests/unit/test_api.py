"""The HTTP API, in process: resolution of recommendations, degradation when the cache is down,
event ingestion, errors, telemetry and the OpenAPI schema (fuzzed with schemathesis).

The cache is a real :class:`InMemorySink` fed by a real :class:`StreamProcessor` on a small
synthetic stream, wrapped so a test can take it "down" (every read raises
:class:`CacheUnavailableError`, as the Redis cache does when Redis is unreachable).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from pydantic import SecretStr
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from recsys_stream.data import Dataset, generate_synthetic
from recsys_stream.events import EventBatch, RatingEvent
from recsys_stream.report import LiveFigures, SeriesPoint, StreamReport
from recsys_stream.serving import (
    CacheUnavailableError,
    InMemorySink,
    ModelSnapshot,
    PublishError,
    ServingCache,
    UserRecommendations,
    UserState,
)
from recsys_stream.settings import (
    ApiSettings,
    LearnerConfig,
    ModelConfig,
    RetrainConfig,
    Settings,
    StreamConfig,
)
from recsys_stream.stream import StreamProcessor
from services.api import create_app
from services.api.routes.recommendations import CachedListLane
from services.api.schemas import (
    Accepted,
    ErrorBody,
    PrequentialFigures,
    Readiness,
    Recommendations,
    SimilarItems,
)
from services.api.schemas import SeriesPoint as SeriesPointBody
from services.api.state import CacheBreaker, RecentUsers, SnapshotKeeper
from services.api.telemetry import Telemetry

CONFIG = LearnerConfig(
    model=ModelConfig(dim=16, context_length=8, mlp_hidden=16, sampled_negatives=64),
    retrain=RetrainConfig(every_events=None),
    device="cpu",
)
API_KEY = "test-key"
UNKNOWN_USER = 1_000_000
OPERATIONS = {
    ("GET", "/users/{user_id}/recommendations"),
    ("GET", "/items/{item_id}/similar"),
    ("GET", "/metrics/prequential"),
    ("GET", "/metrics/prequential/series"),
    ("POST", "/events"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/items/search"),
    ("GET", "/users/{user_id}/history"),
    ("GET", "/dashboard/status"),
}


@dataclasses.dataclass(frozen=True)
class Stream:
    dataset: Dataset
    sink: InMemorySink
    report: StreamReport

    @property
    def snapshot(self) -> ModelSnapshot:
        assert self.sink.latest_snapshot is not None
        return self.sink.latest_snapshot

    def user_with_state(self) -> UserState:
        return next(iter(self.sink.states.values()))


@pytest.fixture(scope="module")
def stream() -> Stream:
    """2,000 synthetic events learned by a small model, with the baselines, one report."""
    dataset = generate_synthetic(2_000, n_users=50, n_items=100, seed=0)
    sink = InMemorySink()
    processor = StreamProcessor.create(CONFIG, StreamConfig(window=200), sink)
    for batch in EventBatch.from_ratings(dataset.ratings).split(250):
        processor.process_batch(batch)
    report = processor.publish_metrics()
    return Stream(dataset, sink, report)


class SwitchableCache:
    """A :class:`ServingCache` in front of another that can be taken down, and counts reads."""

    def __init__(self, inner: ServingCache) -> None:
        self.inner = inner
        self.down = False
        self.calls: dict[str, int] = {}

    def _use(self, name: str) -> ServingCache:
        self.calls[name] = self.calls.get(name, 0) + 1
        if self.down:
            raise CacheUnavailableError("Redis unavailable: connection refused")
        return self.inner

    async def top_k(self, user_id: int) -> UserRecommendations | None:
        return await self._use("top_k").top_k(user_id)

    async def user_state(self, user_id: int) -> UserState | None:
        return await self._use("user_state").user_state(user_id)

    def snapshot(self) -> ModelSnapshot | None:
        return self._use("snapshot").snapshot()

    def snapshot_name(self) -> str | None:
        return self._use("snapshot_name").snapshot_name()

    def metrics(self) -> LiveFigures | None:
        return self._use("metrics").metrics()

    def metrics_series(self, limit: int) -> list[SeriesPoint]:
        return self._use("metrics_series").metrics_series(limit)

    def ping(self) -> bool:
        return self._use("ping").ping()


class FakePublisher:
    """Records what it is given, or fails as a publisher whose Kafka is down."""

    def __init__(self, error: str | None = None) -> None:
        self.error = error
        self.published: list[list[RatingEvent]] = []
        self.closed = False

    async def publish(self, events: list[RatingEvent]) -> None:
        if self.error is not None:
            raise PublishError(self.error)
        self.published.append(list(events))

    async def ping(self) -> bool:
        return self.error is None

    async def close(self) -> None:
        self.closed = True


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """Build an app over a cache and a publisher and open a client on it (closed after)."""
    with ExitStack() as stack:

        def make(
            cache: ServingCache,
            publisher: FakePublisher | None = None,
            *,
            items: Any = None,
            api_key: str | None = API_KEY,
            cache_retry_s: float = 0.0,
            raise_server_exceptions: bool = True,
            **api: Any,
        ) -> TestClient:
            app = create_app(
                Settings(api=ApiSettings(api_key=SecretStr(api_key) if api_key else None, **api)),
                cache,
                publisher or FakePublisher(),
                items,
                cache_retry_s=cache_retry_s,
            )
            client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
            return stack.enter_context(client)

        yield make


def assert_error(response: Any, status: int, code: str) -> ErrorBody:
    """The response is an error in the one shape, with this status and code."""
    assert response.status_code == status, response.text
    body = ErrorBody.model_validate(response.json())
    assert body.error.status == status
    assert body.error.code == code
    assert body.error.message
    return body


def recommend(client: TestClient, user_id: int, k: int) -> Recommendations:
    response = client.get(f"/users/{user_id}/recommendations", params={"k": k})
    assert response.status_code == 200, response.text
    return Recommendations.model_validate(response.json())


# --------------------------------------------------------------------- recommendations


def test_a_cached_list_is_served_sliced_to_k(stream: Stream, make_client: MakeClient) -> None:
    client = make_client(stream.sink)
    user, entry = next(iter(stream.sink.recommendations.items()))
    answer = recommend(client, user, 3)
    assert answer.source == "cache"
    assert (answer.user_id, answer.k) == (user, 3)
    assert [item.item_id for item in answer.items] == entry.item_ids[:3]
    assert [item.score for item in answer.items] == pytest.approx(entry.scores[:3])
    assert (answer.model_version, answer.updated_at) == (entry.model_version, entry.updated_at)


@pytest.mark.parametrize("with_metadata", [False, True])
def test_the_cached_list_lane_answers_byte_for_byte_like_the_route(
    stream: Stream,
    make_client: MakeClient,
    monkeypatch: pytest.MonkeyPatch,
    with_metadata: bool,
) -> None:
    items = stream.dataset.items if with_metadata else None
    lane = make_client(stream.sink, items=items)
    declining = make_client(stream.sink, items=items)
    real_answer = CachedListLane._answer

    async def only_on_the_lane_client(self: CachedListLane, scope: Any) -> bytes | None:
        if self.serving is declining.app.state.serving:  # type: ignore[attr-defined]
            return None  # the route answers
        return await real_answer(self, scope)

    monkeypatch.setattr(CachedListLane, "_answer", only_on_the_lane_client)
    served = 0
    for user, entry in list(stream.sink.recommendations.items())[:5]:
        for query in ({}, {"k": 1}, {"k": 3}, {"k": len(entry.item_ids)}):
            path = f"/users/{user}/recommendations"
            fast, slow = lane.get(path, params=query), declining.get(path, params=query)
            assert fast.status_code == slow.status_code == 200
            assert fast.json()["source"] == "cache"
            assert fast.content == slow.content, (user, query)
            assert fast.headers["content-type"] == slow.headers["content-type"]
            served += 1
    assert served == 20


def test_a_cached_list_shorter_than_k_is_computed_from_the_state(
    stream: Stream, make_client: MakeClient
) -> None:
    client = make_client(stream.sink)
    state = stream.user_with_state()
    answer = recommend(client, state.user_id, 20)
    assert answer.source == "computed"
    expected = stream.snapshot.recommend(state, 20)
    assert [item.item_id for item in answer.items] == [item for item, _ in expected]
    assert not {item.item_id for item in answer.items} & set(state.seen.tolist())
    assert answer.model_version == stream.snapshot.version


def test_an_unknown_user_gets_the_cold_start_list(stream: Stream, make_client: MakeClient) -> None:
    client = make_client(stream.sink)
    answer = recommend(client, UNKNOWN_USER, 5)
    assert answer.source == "cold_start"
    assert [item.item_id for item in answer.items] == stream.snapshot.popular[:5].tolist()


def test_items_carry_metadata_only_when_it_is_loaded(
    stream: Stream, make_client: MakeClient
) -> None:
    plain = make_client(stream.sink).get(f"/users/{UNKNOWN_USER}/recommendations?k=3").json()
    assert all(set(item) == {"item_id", "score"} for item in plain["items"])

    client = make_client(stream.sink, items=stream.dataset.items)
    for path in (f"/users/{UNKNOWN_USER}/recommendations?k=3", "/items/1/similar?k=3"):
        items = client.get(path).json()["items"]
        assert len(items) == 3
        for item in items:
            row = stream.dataset.items.loc[item["item_id"]]
            assert item["title"] == row["title"]
            assert item["year"] == int(row["year"])
            assert item["genres"] == list(row["genres"])


@pytest.mark.parametrize(
    "path",
    [
        "/users/1/recommendations?k=0",
        "/users/1/recommendations?k=101",
        "/users/1/recommendations?k=ten",
        "/users/-1/recommendations",
        f"/users/{2**31}/recommendations",
        "/items/1/similar?k=0",
        "/items/1/similar?k=101",
        "/metrics/prequential/series?limit=0",
    ],
)
def test_out_of_bounds_parameters_are_422_in_the_error_shape(
    stream: Stream, make_client: MakeClient, path: str
) -> None:
    body = assert_error(make_client(stream.sink).get(path), 422, "invalid_request")
    assert body.error.details
    assert body.error.details[0].reason


def test_k_up_to_max_k_is_accepted(stream: Stream, make_client: MakeClient) -> None:
    client = make_client(stream.sink, max_k=30)
    assert len(recommend(client, UNKNOWN_USER, 30).items) == 30
    assert_error(client.get("/users/1/recommendations?k=31"), 422, "invalid_request")


def test_similar_items(stream: Stream, make_client: MakeClient) -> None:
    client = make_client(stream.sink)
    item = int(stream.snapshot.item_ids[0])
    response = client.get(f"/items/{item}/similar", params={"k": 4})
    assert response.status_code == 200
    answer = SimilarItems.model_validate(response.json())
    assert [i.item_id for i in answer.items] == [i for i, _ in stream.snapshot.similar(item, 4)]
    assert item not in {i.item_id for i in answer.items}
    assert answer.model_version == stream.snapshot.version

    assert_error(client.get(f"/items/{UNKNOWN_USER}/similar"), 404, "unknown_item")


def test_without_a_snapshot_similar_items_are_503(make_client: MakeClient) -> None:
    client = make_client(InMemorySink())
    assert_error(client.get("/items/1/similar"), 503, "no_snapshot")
    assert_error(client.get("/users/1/recommendations"), 503, "no_snapshot")


# --------------------------------------------------------------------- degradation


def test_with_the_cache_down_users_seen_before_are_served_from_memory(
    stream: Stream, make_client: MakeClient
) -> None:
    cache = SwitchableCache(stream.sink)
    client = make_client(cache)
    state = stream.user_with_state()
    cached_user = next(user for user in stream.sink.recommendations if user != state.user_id)
    computed = recommend(client, state.user_id, 20)  # reads and keeps the user's state
    cached = recommend(client, cached_user, 5)  # keeps the cached list
    assert (computed.source, cached.source) == ("computed", "cache")

    cache.down = True
    again = recommend(client, state.user_id, 20)
    assert again.source == "snapshot_fallback"
    assert again.items == computed.items
    assert recommend(client, cached_user, 5).items == cached.items
    assert recommend(client, cached_user, 5).source == "snapshot_fallback"
    stranger = recommend(client, UNKNOWN_USER, 5)
    assert stranger.source == "cold_start"
    assert [item.item_id for item in stranger.items] == stream.snapshot.popular[:5].tolist()
    [errors] = [
        float(line.split()[1])
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("recsys_cache_errors_total ")
    ]
    assert errors >= 4

    cache.down = False
    assert recommend(client, cached_user, 5).source == "cache"


def test_with_the_cache_down_and_no_snapshot_ever_it_is_503(
    stream: Stream, make_client: MakeClient
) -> None:
    cache = SwitchableCache(stream.sink)
    cache.down = True
    client = make_client(cache)
    body = assert_error(client.get("/users/1/recommendations"), 503, "cache_unavailable")
    assert "no model snapshot" in body.error.message
    assert_error(client.get("/metrics/prequential"), 503, "cache_unavailable")
    assert_error(client.get("/metrics/prequential/series"), 503, "cache_unavailable")


def test_after_a_cache_failure_the_cache_is_left_alone_for_a_while(
    stream: Stream, make_client: MakeClient
) -> None:
    cache = SwitchableCache(stream.sink)
    client = make_client(cache, cache_retry_s=60.0)
    assert recommend(client, UNKNOWN_USER, 3).source == "cold_start"
    cache.down = True
    calls = cache.calls.get("top_k", 0)
    for _ in range(5):
        assert recommend(client, UNKNOWN_USER, 3).source == "cold_start"
    assert cache.calls["top_k"] == calls + 1


def test_the_breaker_lets_requests_retry_after_its_delay() -> None:
    now = [0.0]
    breaker = CacheBreaker(2.0, clock=lambda: now[0])
    assert breaker.allows()
    breaker.trip()
    now[0] = 1.9
    assert not breaker.allows()
    now[0] = 2.0
    assert breaker.allows()


async def background_check(keeper: SnapshotKeeper) -> None:
    """Wait for the version check the keeper started in its worker thread."""
    pending = keeper._pending
    assert pending is not None
    await asyncio.wrap_future(pending)


def test_the_snapshot_is_refreshed_at_most_every_interval(stream: Stream) -> None:
    sink = InMemorySink(latest_snapshot=stream.snapshot)
    cache = SwitchableCache(sink)
    now = [0.0]
    keeper = SnapshotKeeper(
        cache, CacheBreaker(1.0), Telemetry(), refresh_s=5.0, clock=lambda: now[0]
    )

    async def scenario() -> None:
        assert await keeper.get() is stream.snapshot  # the first read is waited for
        sink.latest_snapshot = dataclasses.replace(stream.snapshot, version=99)
        now[0] = 4.9
        assert (await keeper.get()).version == stream.snapshot.version  # type: ignore[union-attr]
        assert cache.calls["snapshot"] == 1
        now[0] = 5.0
        held = await keeper.get()  # starts a check in the background...
        assert held is not None
        assert held.version == stream.snapshot.version
        await background_check(keeper)  # ...which lands soon after
        assert keeper.current is not None
        assert keeper.current.version == 99
        now[0] = 10.0
        await keeper.get()
        await background_check(keeper)
        assert keeper.current.version == 99

    try:
        asyncio.run(scenario())
    finally:
        keeper.close()
    # With a name to poll, an unchanged snapshot is not read again.
    assert cache.calls["snapshot"] == 2


def test_a_snapshot_that_cannot_be_read_leaves_the_held_one(
    stream: Stream, caplog: pytest.LogCaptureFixture
) -> None:
    sink = InMemorySink(latest_snapshot=stream.snapshot)
    cache = SwitchableCache(sink)
    now = [0.0]
    keeper = SnapshotKeeper(
        cache, CacheBreaker(1.0), Telemetry(), refresh_s=1.0, clock=lambda: now[0]
    )

    def corrupt() -> ModelSnapshot:
        raise ValueError("not a zip file")

    async def scenario() -> None:
        assert await keeper.get() is stream.snapshot
        # A new snapshot is announced, but what the cache holds under it cannot be read.
        sink.latest_snapshot = dataclasses.replace(stream.snapshot, version=2)
        cache.snapshot = corrupt  # type: ignore[method-assign]
        now[0] = 1.0
        await keeper.get()
        await background_check(keeper)
        assert keeper.current is stream.snapshot

    try:
        asyncio.run(scenario())
    finally:
        keeper.close()
    assert "could not load the model snapshot" in caplog.text


def test_recent_users_keeps_the_most_recent(stream: Stream) -> None:
    recent = RecentUsers(2)
    state = stream.user_with_state()
    for user in (1, 2, 3):
        recent.remember(user, state=state)
    assert len(recent) == 2
    assert recent.get(1) is None
    assert recent.get(2) is not None  # now the most recent: 4 pushes 3 out
    recent.remember(4, state=state)
    assert recent.get(3) is None
    disabled = RecentUsers(0)
    disabled.remember(1, state=state)
    assert len(disabled) == 0


# --------------------------------------------------------------------- metrics


def test_prequential_metrics_are_503_until_the_first_report(make_client: MakeClient) -> None:
    client = make_client(InMemorySink())
    assert_error(client.get("/metrics/prequential"), 503, "no_metrics")
    assert client.get("/metrics/prequential/series").json() == []


def test_prequential_metrics_compact_the_latest_report(
    stream: Stream, make_client: MakeClient
) -> None:
    response = make_client(stream.sink).get("/metrics/prequential")
    assert response.status_code == 200
    figures = PrequentialFigures.model_validate(response.json())
    report = stream.report
    assert figures.events == report.prequential.events == 2_000
    assert figures.relevant_events == report.prequential.relevant_events
    assert figures.model_version == report.model_version
    assert figures.published_at == report.published_at
    assert figures.dead_letters == 0
    assert set(figures.models) == {"learner", "most_popular", "recent_popular", "cooc_knn"}
    learner = figures.models["learner"]
    assert set(learner) == {
        "hr@10",
        "ndcg@10",
        "precision@10",
        "recall@10",
        "f1@10",
        "hr@10_last20",
        "hr@10_warm",
        "rmse",
        "mae",
        "hr@10_window",
        "ndcg@10_window",
    }
    assert learner["hr@10"] == report.prequential.models["learner"].overall.hr
    assert learner["hr@10_window"] == report.prequential.ranking_series.models["learner"].hr[-1]
    assert "rmse" not in figures.models["most_popular"]


def test_prequential_series_is_oldest_first(stream: Stream, make_client: MakeClient) -> None:
    sink = InMemorySink()
    reports = [
        dataclasses.replace(
            stream.report, prequential=dataclasses.replace(stream.report.prequential, events=n)
        )
        for n in (1_000, 2_000, 3_000)
    ]
    for report in reports:
        sink.publish_metrics(report)
    client = make_client(sink)
    points = client.get("/metrics/prequential/series").json()
    assert [point["events"] for point in points] == [1_000, 2_000, 3_000]
    assert points[0] == reports[0].point().to_dict()
    for point in points:
        SeriesPointBody.model_validate(point)
    latest = client.get("/metrics/prequential/series", params={"limit": 2}).json()
    assert [point["events"] for point in latest] == [2_000, 3_000]


# --------------------------------------------------------------------- events


def test_one_event_is_published_with_defaults(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = make_client(InMemorySink(), publisher)
    before = time.time()
    response = client.post(
        "/events",
        json={"user_id": 7, "item_id": 42, "rating": 4.5},
        headers={"X-API-Key": API_KEY},
    )
    assert response.status_code == 202, response.text
    answer = Accepted.model_validate(response.json())
    [[event]] = publisher.published
    assert answer.accepted == 1
    assert answer.event_ids == [event.event_id]
    assert uuid.UUID(str(event.event_id)).version == 4
    assert (event.user_id, event.item_id, event.rating, event.source) == (7, 42, 4.5, "api")
    assert before <= event.timestamp <= time.time()


def test_a_batch_is_published_whole_keeping_given_fields(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = make_client(InMemorySink(), publisher)
    batch = [
        {"user_id": 1, "item_id": 2, "rating": 3.0, "timestamp": 100, "event_id": "e-1"},
        {"user_id": 3, "item_id": 4, "rating": 5.0, "source": "mobile"},
    ]
    response = client.post("/events", json={"events": batch}, headers={"X-API-Key": API_KEY})
    assert response.status_code == 202
    [events] = publisher.published
    assert response.json()["event_ids"] == [event.event_id for event in events]
    assert events[0] == RatingEvent(1, 2, 3.0, 100, "e-1", "api")
    assert events[1].source == "mobile"


def test_a_batch_with_invalid_events_is_refused_whole(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = make_client(InMemorySink(), publisher)
    batch = [
        {"user_id": 1, "item_id": 2, "rating": 3.0},
        {"user_id": 1, "item_id": 2, "rating": 9},
        {"user_id": -5, "item_id": 2, "rating": 3.0},
        {"user_id": 1, "rating": 3.0},
        {"user_id": 1, "item_id": 2, "rating": 3.0, "colour": "red"},
        [1, 2, 3],
    ]
    response = client.post("/events", json={"events": batch}, headers={"X-API-Key": API_KEY})
    body = assert_error(response, 422, "invalid_events")
    faults = {detail.index: (detail.field, detail.reason) for detail in body.error.details}
    assert set(faults) == {1, 2, 3, 4, 5}
    assert faults[1] == ("rating", "must be between 0.5 and 5.0, got 9")
    assert faults[2][0] == "user_id"
    assert "missing required field(s) ['item_id']" in faults[3][1]
    assert "unknown field" in faults[4][1]
    assert "expected a JSON object" in faults[5][1]
    assert publisher.published == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"[1, 2]", 422, "invalid_body"),
        (b'{"events": []}', 422, "invalid_body"),
        (b'{"events": {"user_id": 1}}', 422, "invalid_body"),
        (b'{"events": [], "extra": 1}', 422, "invalid_body"),
    ],
)
def test_malformed_bodies_are_refused(
    make_client: MakeClient, body: bytes, status: int, code: str
) -> None:
    publisher = FakePublisher()
    client = make_client(InMemorySink(), publisher)
    response = client.post(
        "/events",
        content=body,
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    assert_error(response, status, code)
    assert publisher.published == []


def test_a_batch_over_the_limit_is_refused(make_client: MakeClient) -> None:
    client = make_client(InMemorySink(), max_batch_events=2)
    event = {"user_id": 1, "item_id": 2, "rating": 3.0}
    response = client.post("/events", json={"events": [event] * 3}, headers={"X-API-Key": API_KEY})
    assert_error(response, 422, "invalid_body")


@pytest.mark.parametrize(
    ("configured", "sent", "status", "code"),
    [
        (API_KEY, None, 401, "missing_api_key"),
        (API_KEY, "wrong-key", 403, "invalid_api_key"),
        (API_KEY, "clé-non-ascii", 403, "invalid_api_key"),
        (None, API_KEY, 403, "writes_disabled"),
        (None, None, 403, "writes_disabled"),
    ],
)
def test_writes_need_the_configured_key(
    make_client: MakeClient, configured: str | None, sent: str | None, status: int, code: str
) -> None:
    publisher = FakePublisher()
    client = make_client(InMemorySink(), publisher, api_key=configured)
    headers = {} if sent is None else {"X-API-Key": sent.encode()}
    response = client.post(
        "/events", json={"user_id": 1, "item_id": 2, "rating": 3.0}, headers=headers
    )
    body = assert_error(response, status, code)
    if code == "writes_disabled":
        assert body.error.message == "writes are disabled: no API key is configured"
    assert publisher.published == []


def test_an_oversized_body_is_413_whether_declared_or_streamed(make_client: MakeClient) -> None:
    publisher = FakePublisher()
    client = make_client(InMemorySink(), publisher, max_body_bytes=2_048)
    event = {"user_id": 1, "item_id": 2, "rating": 3.0}
    large = b'{"events": [' + b",".join([b'{"user_id":1,"item_id":2,"rating":3.0}'] * 100) + b"]}"
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    assert_error(client.post("/events", content=large, headers=headers), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        yield large[:1_000]
        yield large[1_000:]

    assert_error(client.post("/events", content=chunks(), headers=headers), 413, "body_too_large")
    assert publisher.published == []
    assert client.post("/events", json=event, headers={"X-API-Key": API_KEY}).status_code == 202


def test_when_the_publisher_fails_nothing_is_accepted(make_client: MakeClient) -> None:
    client = make_client(InMemorySink(), FakePublisher(error="Kafka unreachable"))
    response = client.post(
        "/events",
        json={"user_id": 1, "item_id": 2, "rating": 3.0},
        headers={"X-API-Key": API_KEY},
    )
    body = assert_error(response, 503, "publish_failed")
    assert "Kafka unreachable" in body.error.message


# --------------------------------------------------------------------- errors, operations


def test_unknown_routes_and_methods_use_the_error_shape(make_client: MakeClient) -> None:
    client = make_client(InMemorySink())
    assert_error(client.get("/nowhere"), 404, "not_found")
    response = client.delete("/events")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


class BrokenCache(SwitchableCache):
    async def top_k(self, user_id: int) -> UserRecommendations | None:
        raise RuntimeError("a bug")


def test_a_bug_is_a_500_in_the_error_shape(stream: Stream, make_client: MakeClient) -> None:
    client = make_client(BrokenCache(stream.sink), raise_server_exceptions=False)
    body = assert_error(client.get("/users/1/recommendations"), 500, "internal_error")
    assert "bug" not in body.error.message


def test_the_app_can_be_started_and_stopped_again(stream: Stream) -> None:
    app = create_app(Settings(), stream.sink, FakePublisher())
    for _ in range(2):  # test clients run the lifespan once per `with`
        with TestClient(app) as client:
            assert client.get("/users/1/recommendations").status_code == 200


def test_healthz_depends_on_nothing(make_client: MakeClient) -> None:
    cache = SwitchableCache(InMemorySink())
    cache.down = True
    response = make_client(cache, FakePublisher(error="down")).get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_with_every_dependency(stream: Stream, make_client: MakeClient) -> None:
    response = make_client(stream.sink).get("/readyz")
    assert response.status_code == 200
    assert Readiness.model_validate(response.json()).checks == {
        "cache": True,
        "publisher": True,
        "snapshot": True,
    }


@pytest.mark.parametrize("failing", ["cache", "publisher", "snapshot"])
def test_readyz_names_the_failed_check(
    stream: Stream, make_client: MakeClient, failing: str
) -> None:
    cache = SwitchableCache(InMemorySink() if failing == "snapshot" else stream.sink)
    publisher = FakePublisher(error="down" if failing == "publisher" else None)
    client = make_client(cache, publisher)
    if failing == "cache":  # the snapshot read while the cache was up is held
        assert client.get("/readyz").status_code == 200
        cache.down = True
    response = client.get("/readyz")
    assert response.status_code == 503
    readiness = Readiness.model_validate(response.json())
    assert readiness.status == "unready"
    assert [name for name, ok in readiness.checks.items() if not ok] == [failing]
    assert readiness.error is not None
    assert readiness.error.code == "not_ready"
    assert failing in readiness.error.message


def test_prometheus_metrics(stream: Stream, make_client: MakeClient) -> None:
    client = make_client(stream.sink)
    user = next(iter(stream.sink.recommendations))
    recommend(client, user, 3)
    recommend(client, user, 3)
    recommend(client, UNKNOWN_USER, 3)
    other = make_client(stream.sink)  # a second app in the process: its own registry
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")
    bucket = (
        'recsys_http_request_duration_seconds_bucket{le="0.005",method="GET",'
        'route="/users/{user_id}/recommendations",status="200"}'
    )
    assert bucket in text
    assert 'recsys_recommendations_total{source="cache"} 2.0' in text
    assert 'recsys_recommendations_total{source="cold_start"} 1.0' in text
    assert "recsys_cache_hit_ratio 0.6666" in text
    assert f"recsys_model_version {float(stream.snapshot.version)}" in text
    assert "recsys_model_age_seconds " in text
    assert "recsys_consumer_lag" not in text  # the report carries none
    assert "recsys_recommendations_total{" not in other.get("/metrics").text


def test_prometheus_metrics_show_the_consumer_lag_when_reported(
    stream: Stream, make_client: MakeClient
) -> None:
    sink = InMemorySink()
    sink.publish_metrics(dataclasses.replace(stream.report, consumer_lag=42))
    assert "recsys_consumer_lag 42.0" in make_client(sink).get("/metrics").text


def test_the_openapi_schema_documents_every_route(make_client: MakeClient) -> None:
    client = make_client(InMemorySink())
    schema = client.get("/openapi.json").json()
    assert schema["info"]["title"] == "recsys-stream"
    assert schema["info"]["version"]
    assert "error" in schema["info"]["description"]
    operations = {
        (method.upper(), path) for path, methods in schema["paths"].items() for method in methods
    }
    assert operations == OPERATIONS
    for path, methods in schema["paths"].items():
        for operation in methods.values():
            assert operation["tags"], path
            assert operation["description"], path
    post = schema["paths"]["/events"]["post"]
    assert post["operationId"] == "post_events"
    assert set(post["requestBody"]["content"]["application/json"]["examples"]) == {
        "single",
        "batch",
    }
    assert {"401", "403", "413", "422", "503"} <= set(post["responses"])
    assert post["security"] == [{"APIKeyHeader": []}]
    recommendations = schema["paths"]["/users/{user_id}/recommendations"]["get"]
    k = next(p for p in recommendations["parameters"] if p["name"] == "k")
    assert (k["schema"]["minimum"], k["schema"]["maximum"]) == (1, 100)
    assert schema["components"]["schemas"]["Recommendations"]["examples"]


# --------------------------------------------------------------------- schemathesis


@pytest.fixture(scope="module")
def api_schema(stream: Stream) -> Any:
    app = create_app(
        Settings(api=ApiSettings(api_key=SecretStr(API_KEY), max_batch_events=20)),
        stream.sink,
        FakePublisher(),
        stream.dataset.items,
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


WITH_INPUTS = {
    ("GET", "/users/{user_id}/recommendations"),
    ("GET", "/items/{item_id}/similar"),
    ("GET", "/metrics/prequential/series"),
    ("POST", "/events"),
    ("GET", "/items/search"),
    ("GET", "/users/{user_id}/history"),
    ("GET", "/dashboard/status"),
}
"""The operations with parameters or a body, so that invalid requests exist to generate."""


@pytest.mark.parametrize(
    ("mode", "method", "path"),
    [(GenerationMode.POSITIVE, *operation) for operation in sorted(OPERATIONS)]
    + [(GenerationMode.NEGATIVE, *operation) for operation in sorted(WITH_INPUTS)],
)
def test_no_request_is_answered_with_a_server_error(
    api_schema: Any, method: str, path: str, mode: GenerationMode
) -> None:
    # Driven by hand rather than by `schema.parametrize()`: the lazy fixture loader of
    # schemathesis 4.32 reads `node._nodeid`, which pytest 9.2 no longer has.
    strategy = api_schema[path][method].as_strategy(mode, headers={"X-API-Key": API_KEY})

    @given(case=strategy)
    @settings(
        max_examples=25,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def answer_is_not_a_server_error(case: Any) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    answer_is_not_a_server_error()


STATEFUL_EXAMPLES = int(os.environ.get("RECSYS_FUZZ_EXAMPLES", "200")) // 10
"""Scenarios of the stateful run: 20 in ``make test``, 1,000 in ``make chaos``."""


def test_the_schema_links_answers_to_the_operations_their_ids_lead_to(api_schema: Any) -> None:
    paths = api_schema.raw_schema["paths"]
    search = paths["/items/search"]["get"]["responses"]["200"]["links"]
    assert search["SimilarToTheFirst"]["operationId"] == "similar_items"
    posted = paths["/events"]["post"]["responses"]["202"]["links"]
    assert posted["RecommendationsOfTheUser"]["parameters"] == {"user_id": "$request.body#/user_id"}
    operation_ids = {
        operation["operationId"] for methods in paths.values() for operation in methods.values()
    }
    for methods in paths.values():
        for operation in methods.values():
            for answer in operation["responses"].values():
                for link in answer.get("links", {}).values():
                    assert link["operationId"] in operation_ids, link


def test_linked_requests_are_never_answered_with_a_server_error(api_schema: Any) -> None:
    """Stateful: schemathesis chains calls along the OpenAPI links (a posted event's user to
    their list and history, a list's first item to its similar items, ...)."""
    answered: Counter[tuple[str, str, int]] = Counter()

    class Workflow(api_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": {"X-API-Key": API_KEY}}

        def after_call(self, response: Any, case: Any) -> None:
            answered[(case.method, case.path, response.status_code)] += 1

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            case.validate_response(response, checks=[not_a_server_error])

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=6,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # The links were followed: a known item's similar items (a random id is almost never one).
    assert answered[("GET", "/items/{item_id}/similar", 200)] > 0, answered
    assert not [key for key in answered if key[2] >= 500]
