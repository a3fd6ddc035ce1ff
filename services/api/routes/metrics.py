"""The live prequential evaluation: the latest figures and their time series.

The trainer's report is large (deciles, every windowed series); this answers the few figures
a dashboard shows, per model, the learner and the baselines side by side. The full series
of compact points is ``/metrics/prequential/series``.
"""

from typing import Annotated, Any, Final

from fastapi import APIRouter, Query
from starlette.responses import Response

from recsys_stream.report import LiveFigures, LiveModelFigures, metric_name
from services.api.deps import ServingDep
from services.api.errors import ApiError
from services.api.schemas import PrequentialFigures, SeriesPoint, error_responses, json_response

MAX_SERIES_POINTS: Final = 10_000


def router() -> APIRouter:
    routes = APIRouter(prefix="/metrics/prequential", tags=["metrics"])

    @routes.get(
        "",
        response_model=PrequentialFigures,
        responses=error_responses(503),
        summary="Latest prequential figures",
    )
    async def prequential(serving: ServingDep) -> Response:
        """The latest test-then-train figures of the learner and the baselines (503 until the
        trainer has published its first report)."""
        live = serving.read(lambda cache: cache.metrics())
        if live is None:
            raise ApiError(503, "no_metrics", "the trainer has not published metrics yet")
        return json_response(answer(live))

    @routes.get(
        "/series",
        response_model=list[SeriesPoint],
        responses=error_responses(422, 503),
        summary="Prequential figures over time",
    )
    async def prequential_series(
        serving: ServingDep,
        limit: Annotated[
            int, Query(ge=1, le=MAX_SERIES_POINTS, description="The latest points to return.")
        ] = 500,
    ) -> Response:
        """The latest ``limit`` points of the metrics time series, oldest first (empty until
        the first report)."""
        points = serving.read(lambda cache: cache.metrics_series(limit))
        return json_response([point.to_dict() for point in points])

    return routes


def answer(live: LiveFigures) -> dict[str, Any]:
    """The body of ``GET /metrics/prequential``: the stream's counters and, per model, its
    overall, recent, warm-user and windowed figures (rating ones where it has them)."""
    body: dict[str, Any] = {
        "events": live.events,
        "relevant_events": live.relevant_events,
        "model_version": live.model_version,
        "published_at": live.published_at,
        "dead_letters": live.dead_letters,
    }
    if live.consumer_lag is not None:
        body["consumer_lag"] = live.consumer_lag
    body["k"] = live.k
    body["models"] = {
        name: _model_figures(figures, live.k) for name, figures in live.models.items()
    }
    return body


def _model_figures(figures: LiveModelFigures, k: int) -> dict[str, float | None]:
    answered: dict[str, float | None] = {
        **figures.overall.named(k),
        metric_name("hr", k, "last20"): figures.last20.hr,
        metric_name("hr", k, "warm"): figures.warm.hr,
    }
    if figures.rating is not None:
        answered["rmse"] = figures.rating.rmse
        answered["mae"] = figures.rating.mae
    answered[metric_name("hr", k, "window")] = figures.hr_window
    answered[metric_name("ndcg", k, "window")] = figures.ndcg_window
    return answered
