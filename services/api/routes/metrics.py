"""The live prequential evaluation: the latest figures and their time series.

The trainer's report is large (deciles, every windowed series); this answers the few figures
a dashboard shows, per model, the learner and the baselines side by side. The full series
of compact points is ``/metrics/prequential/series``.
"""

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from services.api.deps import ServingDep
from services.api.errors import ApiError
from services.api.schemas import PrequentialFigures, SeriesPoint, error_responses, json_response

FIGURES = (
    "hr@{k}",
    "ndcg@{k}",
    "precision@{k}",
    "recall@{k}",
    "f1@{k}",
    "hr@{k}_last20",
    "hr@{k}_warm",
    "rmse",
    "mae",
)
"""Per model, the overall figures answered (where the model has them: baselines have no RMSE)."""
WINDOWED = ("hr@{k}", "ndcg@{k}")
"""Per model, the figures whose latest windowed value is answered as ``<name>_window``."""
REPORT_FIELDS = ("events", "relevant_events", "model_version", "published_at", "dead_letters")
MAX_SERIES_POINTS = 10_000


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
        report = serving.read(lambda cache: cache.metrics())
        if report is None:
            raise ApiError(503, "no_metrics", "the trainer has not published metrics yet")
        return json_response(compact(report))

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
        return json_response(serving.read(lambda cache: cache.metrics_series(limit)))

    return routes


def compact(report: Mapping[str, Any]) -> dict[str, Any]:
    """The figures answered from a report, full (the evaluator's) or compacted (the cache's):
    the windowed value is the series' last point, or the ``<name>_window`` figure."""
    k = report.get("k") if isinstance(report.get("k"), int) else 10
    windowed = _mapping(_mapping(report.get("series")).get("models"))
    models: dict[str, dict[str, Any]] = {}
    for name, figures in _mapping(report.get("models")).items():
        if not isinstance(figures, Mapping):
            continue
        entry = {key: figures[key] for key in (f.format(k=k) for f in FIGURES) if key in figures}
        for metric in (f.format(k=k) for f in WINDOWED):
            values = _mapping(windowed.get(name)).get(metric)
            if isinstance(values, list) and values:
                entry[f"{metric}_window"] = values[-1]
            elif f"{metric}_window" in figures:
                entry[f"{metric}_window"] = figures[f"{metric}_window"]
        models[str(name)] = entry
    answer = {field: report.get(field) for field in REPORT_FIELDS}
    if report.get("consumer_lag") is not None:
        answer["consumer_lag"] = report["consumer_lag"]
    return {**answer, "k": k, "models": models}


def _mapping(value: object) -> Mapping[str, Any]:
    """``value`` if it is a mapping, else empty: a report missing a part still answers."""
    return value if isinstance(value, Mapping) else {}
