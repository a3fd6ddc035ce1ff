"""The dashboard's server side in process: the page and its files, the title search, a user's
history, the live view's status (downsampled series, retrain markers, freshness) and the one
exception to the API key (the embedded page on loopback); and the followed simulation that
`simulate --serve` runs (the replay reported once, posted events learned and published)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from starlette.requests import Request
from typer.testing import CliRunner

from recsys_stream.data import generate_synthetic
from recsys_stream.events import EventBatch, InMemoryEventLog, RatingEvent, encode
from recsys_stream.report import PointFigures, RunReport, SeriesPoint, StreamReport
from recsys_stream.serving import InMemorySink, UserRecommendations
from recsys_stream.settings import (
    ApiSettings,
    LearnerConfig,
    ModelConfig,
    RetrainConfig,
    Settings,
    StreamConfig,
)
from recsys_stream.stream import SimulationConfig, StreamProcessor, run_simulation
from services import cli
from services.api import create_app
from services.api.dashboard import (
    PAGE_HEADER,
    UI_DIR,
    DashboardState,
    FreshnessTracker,
    downsample,
    page_writes_allowed,
)
from services.api.dashboard_schemas import DashboardStatus, SearchResults, UserHistory
from services.api.explorer import Catalogue, RatingHistory

CONFIG = LearnerConfig(
    model=ModelConfig(dim=8, context_length=4, mlp_hidden=8, sampled_negatives=32),
    retrain=RetrainConfig(every_events=None),
    device="cpu",
)
KEY = "ui-key"
TITLES = {
    0: ("Star Wars", 1977, ("Action", "Sci-Fi")),
    1: ("Star Trek: The Motion Picture", 1979, ("Sci-Fi",)),
    2: ("Empire Strikes Back, The", 1980, ("Action", "Sci-Fi")),
    3: ("Amélie", 2001, ("Comedy", "Romance")),
    4: ("Wars of the Roses", 1989, ("Comedy",)),
}


def _items(n: int) -> pd.DataFrame:
    rows = {
        item: TITLES.get(item, (f"Movie {item}", 1990 + item % 10, ("Drama",))) for item in range(n)
    }
    frame = pd.DataFrame(
        [(item, title, year, genres) for item, (title, year, genres) in rows.items()],
        columns=["item_id", "title", "year", "genres"],
    )
    return frame.set_index("item_id")


@pytest.fixture(scope="module")
def learned() -> tuple[InMemorySink, pd.DataFrame, pd.DataFrame]:
    """1,500 synthetic events learned, their ratings and made-up titles."""
    dataset = generate_synthetic(1_500, n_users=30, n_items=60, seed=3)
    sink = InMemorySink()
    processor = StreamProcessor.create(CONFIG, StreamConfig(window=200), sink)
    for batch in EventBatch.from_ratings(dataset.ratings).split(300):
        processor.process_batch(batch)
        processor.publish_metrics()
    return sink, dataset.ratings, _items(60)


class Publisher:
    def __init__(self) -> None:
        self.published: list[RatingEvent] = []

    async def publish(self, events: list[RatingEvent]) -> None:
        self.published.extend(events)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        return None


@pytest.fixture
def client(learned: tuple[InMemorySink, pd.DataFrame, pd.DataFrame]) -> Iterator[TestClient]:
    sink, ratings, items = learned
    app = create_app(
        Settings(api=ApiSettings(api_key=SecretStr(KEY))),
        sink,
        Publisher(),
        items,
        ratings=ratings,
    )
    with TestClient(app) as opened:
        yield opened


def test_the_page_is_served_at_the_root_with_a_strict_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert '<script type="module" src="/ui/app.js">' in page.text
    for name, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        served = client.get(f"/ui/{name}")
        assert served.status_code == 200
        assert kind in served.headers["content-type"]
        assert served.content == (UI_DIR / name).read_bytes()


def test_the_page_loads_nothing_from_elsewhere() -> None:
    for path in UI_DIR.iterdir():
        # The SVG namespace is a name, never fetched.
        text = path.read_text().replace("http://www.w3.org/2000/svg", "")
        assert "http://" not in text, path.name
        assert "https://" not in text, path.name
        assert "@import" not in text, path.name


def test_the_page_never_holds_the_api_key(client: TestClient) -> None:
    for path in ("/", "/ui/app.js", "/ui/style.css"):
        assert KEY not in client.get(path).text
    status = client.get("/dashboard/status").text
    assert KEY not in status


def test_a_search_ranks_the_whole_title_then_prefixes_then_popularity() -> None:
    metadata = {
        item: {"title": title, "year": year, "genres": list(genres)}
        for item, (title, year, genres) in TITLES.items()
    }
    catalogue = Catalogue(metadata, popularity={1: 10, 2: 50, 4: 1})
    assert [i.item_id for i in catalogue.search("star wars", 10)] == [0]
    assert [i.item_id for i in catalogue.search("star", 10)] == [1, 0]
    assert [i.item_id for i in catalogue.search("wars", 10)] == [4, 0]
    assert [i.item_id for i in catalogue.search("sta 1977", 10)] == [0]
    assert [i.item_id for i in catalogue.search("AMELIE", 10)] == [3]
    assert catalogue.search("  !! ", 10) == []
    assert len(catalogue.search("s", 2)) == 2


def test_the_search_route_answers_titles(client: TestClient) -> None:
    answer = client.get("/items/search", params={"q": "star wars"})
    assert answer.status_code == 200
    body = SearchResults.model_validate(answer.json())
    assert [(i.title, i.year) for i in body.items] == [("Star Wars", 1977)]
    assert client.get("/items/search", params={"q": ""}).status_code == 422
    assert client.get("/items/search", params={"q": "x", "limit": 0}).status_code == 422


def test_a_history_is_the_learned_ratings_newest_first_then_posted_ones() -> None:
    ratings = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2],
            "item_id": [10, 11, 10, 12],
            "rating": [3.0, 4.0, 5.0, 1.0],
            "timestamp": [100, 200, 300, 150],
        }
    )
    history = RatingHistory(ratings)
    assert [(r.item_id, r.rating) for r in history.of(1, None)] == [(10, 5.0), (11, 4.0)]
    # Ratings the model has not learned yet (a replay under way) are left out.
    assert [r.item_id for r in history.of(1, [11])] == [11]
    history.record([RatingEvent(1, 12, 2.0, 400.0)])
    assert [r.item_id for r in history.of(1, [])] == [12]
    assert history.of(99, None) == []
    assert history.popularity() == {10: 2, 11: 1, 12: 1}


def test_the_history_route_lists_a_users_ratings_with_titles(
    client: TestClient, learned: tuple[InMemorySink, pd.DataFrame, pd.DataFrame]
) -> None:
    _, ratings, items = learned
    user = int(ratings.user_id.iloc[0])
    body = UserHistory.model_validate(
        client.get(f"/users/{user}/history", params={"limit": 5}).json()
    )
    assert body.known
    assert len(body.ratings) == 5
    assert body.ratings_total == ratings[ratings.user_id == user].item_id.nunique()
    assert [r.timestamp for r in body.ratings] == sorted(
        (r.timestamp for r in body.ratings), reverse=True
    )
    assert all(r.title == items.loc[r.item_id, "title"] for r in body.ratings)
    unknown = UserHistory.model_validate(client.get("/users/999999/history").json())
    assert not unknown.known
    assert unknown.ratings == []


def _point(events: int, version: int, hr: float) -> SeriesPoint:
    figures = PointFigures(hr=hr, ndcg=hr / 2, rmse=None, hr_window=hr, ndcg_window=hr / 2)
    return SeriesPoint(
        k=10,
        published_at=1_000.0 + events / 100,
        events=events,
        model_version=version,
        models={"learner": figures},
    )


def test_a_long_series_is_downsampled_keeping_every_model_change() -> None:
    points = [_point(1_000 * j, 1 + j // 2_500, j / 10_000) for j in range(10_000)]
    columns = downsample(points, 300)
    assert len(columns.events) <= 300
    assert columns.events[0] == 0
    assert columns.events[-1] == points[-1].events
    assert columns.total_points == 10_000
    assert columns.retrains == [(2_500_000, 2), (5_000_000, 3), (7_500_000, 4)]
    assert {events for events, _ in columns.retrains} <= set(columns.events)
    values = columns.models["learner"]["hr@10_window"]
    assert len(values) == len(columns.events)
    assert values == sorted(v for v in values if v is not None)
    assert columns.events_per_second == pytest.approx(100.0)
    assert downsample(points[:5], 300).events == [p.events for p in points[:5]]
    assert downsample([], 300).events_per_second is None


def test_the_status_has_the_series_figures_and_the_write_mode(client: TestClient) -> None:
    answer = client.get("/dashboard/status", params={"points": 10})
    assert answer.status_code == 200, answer.text
    status = DashboardStatus.model_validate(answer.json())
    assert status.writes == "key"
    assert status.live is not None
    assert status.series.events == [300, 600, 900, 1_200, 1_500]
    assert set(status.series.models) == set(status.live.models)
    assert status.freshness.samples == 0
    assert status.catalogue_items == 60
    assert client.get("/dashboard/status", params={"points": 1}).status_code == 422


def test_the_status_before_any_report(learned: Any) -> None:
    app = create_app(Settings(), InMemorySink(), Publisher())
    with TestClient(app) as opened:
        status = DashboardStatus.model_validate(opened.get("/dashboard/status").json())
    assert status.live is None
    assert status.series.events == []
    assert status.writes == "disabled"


def _run(coroutine: Coroutine[Any, Any, None]) -> None:
    """``coroutine`` run to the end on a loop of its own thread: the browser tests' Playwright
    keeps an event loop in the main thread when they run in the same session."""
    with ThreadPoolExecutor(1) as executor:
        executor.submit(asyncio.run, coroutine).result()


def test_freshness_is_acceptance_to_the_users_next_list() -> None:
    sink = InMemorySink()
    tracker = FreshnessTracker(give_up_s=60.0)
    now = time.time()
    tracker.accepted([RatingEvent(1, 2, 4.0, now), RatingEvent(2, 3, 4.0, now)], now)
    tracker.accepted([RatingEvent(3, 3, 4.0, now)], now - 120)
    sink.publish_recommendations([UserRecommendations(1, [5], [1.0], 1, now + 0.25)], [])
    _run(tracker.settle(sink))
    p50, p99, samples = tracker.figures()
    assert samples == 1
    assert p50 == pytest.approx(0.25)
    assert p99 == pytest.approx(0.25)
    assert tracker.stale == 1  # user 3's list never came
    sink.publish_recommendations([UserRecommendations(2, [5], [1.0], 1, now + 0.5)], [])
    _run(tracker.settle(sink))
    assert tracker.figures()[2] == 2


def _request(
    *, loopback: bool, client: str = "127.0.0.1", host: str = "127.0.0.1:8000", header: bool
) -> Request:
    class App:
        class state:  # noqa: N801 - mimics Starlette's app.state
            dashboard = DashboardState(
                catalogue=Catalogue({}, {}), history=RatingHistory(None), loopback_writes=loopback
            )

    headers = [(b"host", host.encode())]
    if header:
        headers.append((PAGE_HEADER.lower().encode(), b"1"))
    return Request(
        {
            "type": "http",
            "method": "POST",
            "path": "/events",
            "headers": headers,
            "client": (client, 5000),
            "app": App(),
        }
    )


@pytest.mark.parametrize(
    ("case", "request_args", "allowed"),
    [
        ("embedded page on loopback", {"loopback": True, "header": True}, True),
        ("localhost name", {"loopback": True, "header": True, "host": "localhost:1"}, True),
        ("ipv6 loopback", {"loopback": True, "header": True, "client": "::1"}, True),
        ("flag not set (services)", {"loopback": False, "header": True}, False),
        ("no page header (a cross-site form)", {"loopback": True, "header": False}, False),
        ("remote peer", {"loopback": True, "header": True, "client": "10.0.0.5"}, False),
        ("rebound host name", {"loopback": True, "header": True, "host": "evil.test:8000"}, False),
    ],
)
def test_page_writes_need_the_flag_loopback_and_the_pages_header(
    case: str, request_args: dict[str, Any], allowed: bool
) -> None:
    assert page_writes_allowed(_request(**request_args)) is allowed, case


def test_without_the_flag_the_page_still_needs_the_key(client: TestClient) -> None:
    event = {"user_id": 1, "item_id": 2, "rating": 4}
    assert client.post("/events", json=event, headers={PAGE_HEADER: "1"}).status_code == 401
    assert client.post("/events", json=event, headers={"X-API-Key": KEY}).status_code == 202


def test_a_followed_simulation_reports_the_replay_then_learns_and_publishes_posted_events() -> None:
    dataset = generate_synthetic(600, n_users=20, n_items=40, seed=4)
    follow = threading.Event()
    log = InMemoryEventLog(partitions=1)
    replayed: list[RunReport] = []

    class Sink(InMemorySink):
        def publish_metrics(self, report: StreamReport) -> None:
            super().publish_metrics(report)
            if report.prequential.events == 601:  # the posted event, counted when idle
                follow.set()

    def on_replayed(report: RunReport) -> None:
        replayed.append(report)
        log.extend([encode(RatingEvent(3, 5, 5.0, 2e9))], [b"3"])

    sink = Sink()
    run = run_simulation(
        dataset,
        SimulationConfig(learner=CONFIG, stream=StreamConfig(batch_size=200, baselines=False)),
        sink=sink,
        log=log,
        follow_until=follow,
        on_replayed=on_replayed,
    )
    assert [r.prequential.events for r in replayed] == [600]
    assert run.prequential.events == 601
    assert 5 not in sink.recommendations[3].item_ids  # learned: no longer recommended


def test_serving_on_a_taken_port_is_one_clear_error_before_the_replay() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            cli.app,
            ["simulate", "--dataset", "synthetic:1k", "--serve", "--port", str(port)],
        )
    assert result.exit_code == 3, result.output
    assert f"cannot serve on 127.0.0.1:{port}" in result.output
    assert "Dashboard:" not in result.output
