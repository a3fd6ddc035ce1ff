"""The API's wire format: pydantic models that document it, and the encoder that writes it.

The models describe every body in the OpenAPI schema (with examples), but the routes do not
push their answers through them: each route builds plain dicts and encodes them with orjson
(:func:`json_response`), which is several times faster than validating a response model on
every request and is what keeps the cached recommendation path cheap. The tests check that the
bodies match these models.
"""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict
from starlette.responses import Response

from recsys_stream.events import MAX_ID, MAX_TEXT_LENGTH, RATING_MAX, RATING_MIN, TIMESTAMP_MAX
from recsys_stream.report import metric_name

Source = Literal["cache", "computed", "cold_start", "snapshot_fallback"]


def json_response(payload: Any, status: int = 200) -> Response:
    """``payload`` as a JSON response (orjson: numpy-free plain values, NaN written as null)."""
    return Response(orjson.dumps(payload), status_code=status, media_type="application/json")


class Item(BaseModel):
    """A recommended item; title, year and genres appear when item metadata is loaded."""

    item_id: int = Field(examples=[242])
    score: float = Field(
        description="The model's score (higher is better); comparable within one list only.",
        examples=[3.91],
    )
    title: str | None = Field(default=None, examples=["Kolya (1996)"])
    year: int | None = Field(default=None, examples=[1996])
    genres: list[str] | None = Field(default=None, examples=[["Comedy"]])


class Recommendations(BaseModel):
    """A user's top-k list and where it came from."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "user_id": 196,
                    "k": 2,
                    "items": [
                        {
                            "item_id": 242,
                            "score": 3.91,
                            "title": "Kolya (1996)",
                            "year": 1996,
                            "genres": ["Comedy"],
                        },
                        {
                            "item_id": 302,
                            "score": 3.55,
                            "title": "L.A. Confidential (1997)",
                            "year": 1997,
                            "genres": ["Crime", "Film-Noir", "Mystery", "Thriller"],
                        },
                    ],
                    "model_version": 12,
                    "source": "cache",
                    "updated_at": 1_700_000_000.0,
                }
            ]
        }
    )

    user_id: int
    k: int
    items: list[Item] = Field(description="Best first; fewer than k if the catalogue is smaller.")
    model_version: int
    source: Source = Field(
        description="`cache`: the trainer's list for this user; `computed`: scored here from "
        "the user's state and the model snapshot; `cold_start`: an unknown user, given the "
        "model's user-independent list; `snapshot_fallback`: the cache is unreachable and the "
        "list comes from what this process kept (its last snapshot, users served recently)."
    )
    updated_at: float | None = Field(
        description="Unix time of the model state the list reflects (the cached list's time, "
        "else the snapshot's)."
    )


class SimilarItems(BaseModel):
    """Items whose learned vectors are closest (cosine) to one item's."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "item_id": 50,
                    "k": 2,
                    "items": [
                        {"item_id": 181, "score": 0.93},
                        {"item_id": 172, "score": 0.91},
                    ],
                    "model_version": 12,
                }
            ]
        }
    )

    item_id: int
    k: int
    items: list[Item]
    model_version: int


def _example_figures(k: int, hr: float, rating: bool) -> JsonDict:
    """Example figures of one model, named as the API names them."""
    figures: JsonDict = {
        metric_name("hr", k): hr,
        metric_name("ndcg", k): hr / 2,
        metric_name("precision", k): hr / k,
        metric_name("recall", k): hr,
        metric_name("f1", k): round(2 * hr / (k + 1), 4),
        metric_name("hr", k, "last20"): hr + 0.01,
        metric_name("hr", k, "warm"): hr + 0.005,
    }
    if rating:
        figures.update(rmse=0.95, mae=0.75)
    figures[metric_name("hr", k, "window")] = hr + 0.013
    figures[metric_name("ndcg", k, "window")] = hr / 2 + 0.005
    return figures


_MODEL_FIGURES_DESCRIPTION = (
    "Per model (`learner`, `most_popular`, `recent_popular`, `cooc_knn`), its figures named by "
    f"cut-off and scope: `{metric_name('hr', 10)}`, `{metric_name('ndcg', 10)}`, "
    f"`{metric_name('hr', 10, 'last20')}` (last 20% of relevant events), "
    f"`{metric_name('hr', 10, 'warm')}` (users with an earlier event), "
    f"`{metric_name('hr', 10, 'window')}` (the sliding window's latest value), and `rmse`, "
    "`mae` for models that predict ratings."
)


class PrequentialFigures(BaseModel):
    """The latest prequential report, compacted: per model its overall, recent (last 20%),
    warm-user and windowed figures, the learner and the baselines side by side."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "events": 100_000,
                    "relevant_events": 55_375,
                    "model_version": 3,
                    "published_at": 1_700_000_000.0,
                    "dead_letters": 0,
                    "k": 10,
                    "models": {
                        "learner": _example_figures(10, 0.112, rating=True),
                        "most_popular": _example_figures(10, 0.061, rating=False),
                    },
                }
            ]
        }
    )

    events: int
    relevant_events: int
    model_version: int
    published_at: float
    dead_letters: int
    consumer_lag: int | None = Field(
        default=None, description="The trainer's Kafka consumer lag, when it reports one."
    )
    k: int
    models: dict[str, dict[str, float | None]] = Field(description=_MODEL_FIGURES_DESCRIPTION)


class SeriesPoint(BaseModel):
    """One point of the live metrics' time series (:class:`recsys_stream.report.SeriesPoint`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "published_at": 1_700_000_000.0,
                    "events": 50_000,
                    "model_version": 2,
                    "k": 10,
                    "models": {
                        "learner": {
                            metric_name("hr", 10): 0.108,
                            metric_name("ndcg", 10): 0.054,
                            "rmse": 0.96,
                            metric_name("hr", 10, "window"): 0.117,
                            metric_name("ndcg", 10, "window"): 0.058,
                        }
                    },
                }
            ]
        }
    )

    published_at: float
    events: int
    model_version: int
    k: int
    models: dict[str, dict[str, float | None]] = Field(
        description="Per model: overall and windowed HR@k and NDCG@k, and RMSE (null for "
        "models that do not predict ratings)."
    )


class EventIn(BaseModel):
    """One rating event as a client sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"user_id": 196, "item_id": 242, "rating": 3.0, "timestamp": 881250949}]
        },
    )

    user_id: int = Field(ge=0, le=MAX_ID)
    item_id: int = Field(ge=0, le=MAX_ID)
    rating: float = Field(ge=RATING_MIN, le=RATING_MAX)
    timestamp: float | None = Field(
        default=None,
        ge=0,
        le=TIMESTAMP_MAX,
        description="Unix seconds; the server's time when left out or null.",
    )
    event_id: str | None = Field(
        default=None,
        max_length=MAX_TEXT_LENGTH,
        description="An idempotency key for consumers; a UUID4 is assigned when left out.",
    )
    source: str | None = Field(
        default=None,
        max_length=MAX_TEXT_LENGTH,
        description='Who sent it; "api" when left out.',
    )


class Accepted(BaseModel):
    """Events handed to the event log, with the ids they travel under."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"accepted": 1, "event_ids": ["0b5e0a64-63a8-4d7e-9b7f-3f8e2f4b7c1a"]}]
        }
    )

    accepted: int
    event_ids: list[str]


class ErrorDetail(BaseModel):
    """What is wrong with one field, or one item of a batch (``index``)."""

    model_config = ConfigDict(extra="allow")

    field: str | None = None
    reason: str
    index: int | None = None
    location: str | None = None


class ErrorInfo(BaseModel):
    status: int
    code: str = Field(description="Stable, machine-readable: branch on this, not the message.")
    message: str
    details: list[ErrorDetail] = Field(default_factory=list)


class ErrorBody(BaseModel):
    """The one shape of every error answer."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "status": 422,
                        "code": "invalid_events",
                        "message": "1 of 2 events is invalid; none was accepted",
                        "details": [
                            {
                                "index": 1,
                                "field": "rating",
                                "reason": "must be between 0.5 and 5.0, got 9",
                            }
                        ],
                    }
                }
            ]
        }
    )

    error: ErrorInfo


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """Which dependency checks pass; a 503 answer also carries an ``error`` object."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"status": "ready", "checks": {"cache": True, "publisher": True, "snapshot": True}}
            ]
        }
    )

    status: Literal["ready", "unready"]
    checks: dict[str, bool]
    error: ErrorInfo | None = None


def linked(status: int, **links: tuple[str, dict[str, str]]) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry giving an answer its OpenAPI links: each ``name=(operation,
    {parameter: runtime expression})`` says which operation the answer's ids lead to (a
    client, or a stateful test, follows them).

    >>> entry = linked(200, Similar=("similar_items", {"item_id": "$response.body#/item_id"}))
    >>> entry[200]["links"]["Similar"]
    {'operationId': 'similar_items', 'parameters': {'item_id': '$response.body#/item_id'}}
    """
    return {
        status: {
            "links": {
                name: {"operationId": operation, "parameters": parameters}
                for name, (operation, parameters) in links.items()
            }
        }
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entries documenting a route's error answers."""
    descriptions = {
        401: "The X-API-Key header is missing.",
        403: "The API key is wrong, or no key is configured (writes are disabled).",
        404: "Unknown resource.",
        400: "The body is not valid JSON.",
        413: "The body exceeds the configured size limit.",
        422: "Invalid parameters or body; `details` names each fault.",
        429: "Too many requests with this API key; retry after `Retry-After` seconds.",
        503: "A dependency is unavailable and there is nothing to fall back on.",
        504: "The broker did not confirm every event: some may be written (ids in `details`).",
    }
    return {
        status: {"model": ErrorBody, "description": descriptions[status]} for status in statuses
    }
