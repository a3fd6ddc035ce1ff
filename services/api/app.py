"""The application factory: one FastAPI app over a serving cache and an event publisher.

The app knows its dependencies only through the core protocols
(:class:`~recsys_stream.serving.ServingCache`, :class:`~recsys_stream.serving.EventPublisher`),
so the same code serves from Redis and Kafka in the services and from an
:class:`~recsys_stream.serving.InMemorySink` in the embedded mode and the tests. Everything it
holds hangs off ``app.state.serving``; nothing is global.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pandas as pd
from fastapi import FastAPI

from recsys_stream import __version__
from recsys_stream.serving import CacheUnavailableError, EventPublisher, ServingCache
from recsys_stream.settings import Settings
from services.api.dashboard import DashboardState, FreshnessTracker
from services.api.errors import install_error_handlers
from services.api.explorer import Catalogue, RatingHistory, RecordingPublisher
from services.api.routes import build_routers
from services.api.routes.dashboard import mount_page
from services.api.routes.recommendations import CachedListLane
from services.api.state import CacheBreaker, RecentUsers, Serving, SnapshotKeeper
from services.api.telemetry import ServingFigures, Telemetry, TelemetryMiddleware

DESCRIPTION = """\
Recommendations from a model that learns from every rating as it streams in.

- **Recommendations** come from the trainer's cached top-K lists, else are scored here from the
  user's state and the latest model snapshot; each answer says which (`source`). When the cache
  is unreachable the API keeps answering from what it holds (`snapshot_fallback`).
- **Metrics** are the live prequential (test-then-train) evaluation of the learner against
  popularity and co-occurrence baselines.
- **Events** sent here join the stream the model learns from; writing needs the `X-API-Key`
  header.

Every error has one shape: `{"error": {"status", "code", "message", "details"}}`.
"""

TAGS = [
    {"name": "recommendations", "description": "Top-k lists for users, similar items."},
    {"name": "metrics", "description": "The live prequential evaluation."},
    {"name": "events", "description": "Rating events into the stream (needs an API key)."},
    {"name": "operations", "description": "Liveness, readiness, Prometheus metrics."},
]


def create_app(
    settings: Settings,
    cache: ServingCache,
    publisher: EventPublisher,
    items: pd.DataFrame | None = None,
    *,
    ratings: pd.DataFrame | None = None,
    loopback_writes: bool = False,
    snapshot_refresh_s: float = 5.0,
    cache_retry_s: float = 1.0,
) -> FastAPI:
    """The API over ``cache`` and ``publisher``.

    ``items`` is the item metadata (indexed by ``item_id``, columns ``title``, ``year``,
    ``genres``, as ``Dataset.items``); when given, every item answered carries those fields.
    The API looks for a new model snapshot at most every ``snapshot_refresh_s`` seconds, and
    after a failed cache read leaves the cache alone for ``cache_retry_s`` seconds.

    The dashboard at ``/`` shows ``ratings`` (as ``Dataset.ratings``) in a user's history;
    ``loopback_writes`` lets its page post ratings from loopback without the API key (set by
    ``simulate --serve`` only).
    """
    metadata = item_metadata(items)
    history = RatingHistory(ratings)
    dashboard = DashboardState(
        catalogue=Catalogue(metadata, history.popularity()),
        history=history,
        freshness=FreshnessTracker(),
        loopback_writes=loopback_writes,
    )
    publisher = RecordingPublisher(publisher, history, dashboard.freshness.accepted)
    telemetry = Telemetry()
    breaker = CacheBreaker(cache_retry_s)
    serving = Serving(
        settings=settings.api,
        cache=cache,
        publisher=publisher,
        telemetry=telemetry,
        breaker=breaker,
        snapshots=SnapshotKeeper(cache, breaker, telemetry, refresh_s=snapshot_refresh_s),
        recent=RecentUsers(settings.api.user_state_cache_size),
        metadata=metadata,
    )
    telemetry.track_state(lambda: _serving_figures(serving))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything imported and built so far lives as long as the process: keep it out of
        # the garbage collector's full passes, and collect the young generation less often
        # (requests allocate a lot of short-lived objects): both cut ~100 ms pauses from the
        # latency tail.
        gc.collect()
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        yield
        serving.snapshots.close()
        await publisher.close()

    app = FastAPI(
        title="recsys-stream",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Operation ids are the handlers' names (`recommend_for_user`), not FastAPI's
        # path-derived ones: generated clients get readable method names.
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.serving = serving
    app.state.dashboard = dashboard
    install_error_handlers(app)
    routers = build_routers(settings.api)
    for router in routers:
        app.include_router(router)
    mount_page(app)
    # Middleware added last wraps outermost: telemetry times the cached-list lane too.
    lane_route = next(
        route
        for router in routers
        for route in router.routes
        if getattr(route, "name", "") == "recommend_for_user"
    )
    app.add_middleware(CachedListLane, serving=serving, max_k=settings.api.max_k, route=lane_route)
    app.add_middleware(TelemetryMiddleware, telemetry=telemetry)
    return app


def item_metadata(items: pd.DataFrame | None) -> dict[int, dict[str, object]]:
    """Per item id, the fields merged into each item answered, built once: a dict lookup per
    item on the hot path instead of a DataFrame one."""
    if items is None:
        return {}
    return {
        int(item_id): {
            "title": None if pd.isna(title) else str(title),
            "year": None if pd.isna(year) else int(year),
            "genres": list(genres) if isinstance(genres, tuple | list) else [],
        }
        for item_id, title, year, genres in zip(
            items.index, items["title"], items["year"], items["genres"], strict=True
        )
    }


def _serving_figures(serving: Serving) -> ServingFigures:
    """The snapshot held, and the consumer lag of the trainer's latest report if the cache
    answers (a scrape never fails for want of the cache)."""
    snapshot = serving.snapshots.current
    lag: int | None = None
    if serving.breaker.allows():
        try:
            live = serving.cache.metrics()
        except CacheUnavailableError:
            serving.cache_failed()
        else:
            lag = live.consumer_lag if live is not None else None
    return ServingFigures(
        model_version=snapshot.version if snapshot else None,
        model_created_at=snapshot.created_at if snapshot else None,
        consumer_lag=None if lag is None else float(lag),
    )
