"""The dashboard: its page (static files at ``/`` and ``/ui/``) and the live view's one read.

The page is plain HTML, CSS and JavaScript shipped in the package (``services/api/ui/``), with
SVG charts drawn by its own code: no build step, nothing fetched from elsewhere. Its security
policy allows only this origin's scripts and styles, and no framing.
"""

from __future__ import annotations

import time
from typing import Annotated, Final

from fastapi import APIRouter, FastAPI, Query, Request
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from services.api.dashboard import UI_DIR, DashboardState, downsample
from services.api.dashboard_schemas import DashboardStatus
from services.api.deps import ServingDep
from services.api.routes.metrics import MAX_SERIES_POINTS, answer
from services.api.schemas import error_responses, json_response

__all__ = ["mount_page", "router"]

PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def router() -> APIRouter:
    routes = APIRouter(tags=["dashboard"])

    @routes.get(
        "/dashboard/status",
        response_model=DashboardStatus,
        responses=error_responses(422, 503),
        summary="The live view's figures",
    )
    async def dashboard_status(
        request: Request,
        serving: ServingDep,
        points: Annotated[
            int, Query(ge=10, le=2_000, description="Most points per series drawn.")
        ] = 300,
    ) -> Response:
        """The latest figures, the metrics series downsampled to ``points`` (each model
        change kept: the retrain markers), the event rate, and the freshness of the events
        posted through this API."""
        dashboard: DashboardState = request.app.state.dashboard
        live = serving.read(lambda cache: cache.metrics())
        key = (live.published_at if live is not None else 0.0, points)
        if dashboard.series is None or dashboard.series_key != key:
            # The whole series is read only when a new report came: polls in between are a
            # read of the latest figures.
            full = serving.read(lambda cache: cache.metrics_series(MAX_SERIES_POINTS))
            dashboard.series = downsample(full, points)
            dashboard.series_key = key
        series = dashboard.series
        await dashboard.freshness.settle(serving.cache)
        p50, p99, samples = dashboard.freshness.figures()
        return json_response(
            {
                "writes": dashboard.write_mode(serving.keys.configured),
                "live": answer(live) if live is not None else None,
                "users": live.users if live is not None else None,
                "items": live.items if live is not None else None,
                "retrains_completed": live.retrains_completed if live is not None else None,
                "series": {
                    "events": series.events,
                    "published_at": series.published_at,
                    "model_version": series.model_version,
                    "models": series.models,
                    "total_points": series.total_points,
                },
                "retrains": [
                    {"events": events, "model_version": version}
                    for events, version in series.retrains
                ],
                "events_per_second": series.events_per_second,
                "freshness": {
                    "p50_s": p50,
                    "p99_s": p99,
                    "samples": samples,
                    "stale": dashboard.freshness.stale,
                },
                "catalogue_items": len(dashboard.catalogue),
                "now": time.time(),
            }
        )

    return routes


def mount_page(app: FastAPI) -> None:
    """The page at ``/`` and its files under ``/ui/`` (left out of the OpenAPI schema)."""
    index = UI_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    async def dashboard_page() -> Response:
        return FileResponse(index, media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/ui", StaticFiles(directory=UI_DIR), name="ui")
