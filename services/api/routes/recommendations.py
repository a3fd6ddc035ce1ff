"""Recommendations for a user and items similar to an item.

A user's list is resolved in this order, the first that answers wins:

1. ``cache``: the trainer's cached top-K, when it holds at least ``k`` items (sliced to ``k``);
2. ``computed``: the user's state scored against the model snapshot;
3. ``cold_start``: an unknown user gets the snapshot's user-independent list.

When the cache raises :class:`~recsys_stream.serving.CacheUnavailableError`, the answer comes
from what this process holds (``snapshot_fallback``): a list it served the user recently, else
the user's remembered state scored against the last snapshot it read; users it never saw get
the cold-start list. Only with no snapshot at all does it answer 503.

The cached path is the hot one: one cache read, a slice, a dict lookup per item for metadata,
and orjson; no response-model validation (the model is declared for the OpenAPI schema only).
"""

import re
from collections.abc import Iterable, Mapping
from typing import Annotated

import numpy as np
import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from recsys_stream.events import MAX_ID
from recsys_stream.serving import (
    CacheUnavailableError,
    ModelSnapshot,
    UserRecommendations,
    UserState,
)
from recsys_stream.settings import ApiSettings
from services.api.deps import ServingDep
from services.api.errors import ApiError
from services.api.schemas import (
    Recommendations,
    SimilarItems,
    Source,
    error_responses,
    json_response,
    linked,
)
from services.api.state import Serving

NO_METADATA: Mapping[str, object] = {"title": None, "year": None, "genres": None}
"""What an item missing from the loaded metadata shows, so every item has the same fields."""


def router(settings: ApiSettings) -> APIRouter:
    """The recommendation routes, with ``k`` bounded by ``settings.max_k``."""
    routes = APIRouter(tags=["recommendations"])
    default_k = min(10, settings.max_k)
    k_query = Query(ge=1, le=settings.max_k, description="How many items to return.")

    @routes.get(
        "/users/{user_id}/recommendations",
        response_model=Recommendations,
        responses=error_responses(422, 503)
        | linked(
            200,
            SimilarToTheFirst=("similar_items", {"item_id": "$response.body#/items/0/item_id"}),
            History=("user_history", {"user_id": "$response.body#/user_id"}),
        ),
        summary="A user's top-k items",
    )
    async def recommend_for_user(
        user_id: Annotated[int, Path(ge=0, le=MAX_ID)],
        request: Request,
        k: Annotated[int, k_query] = default_k,
    ) -> Response:
        """The user's best ``k`` items, from the cache when it has them, else computed from
        the user's state and the model snapshot; see ``source`` for which."""
        serving: Serving = request.app.state.serving  # not a dependency: this path is hot
        if serving.breaker.allows():
            try:
                return await _from_cache(serving, user_id, k)
            except CacheUnavailableError:
                serving.cache_failed()
        return await _from_memory(serving, user_id, k)

    @routes.get(
        "/items/{item_id}/similar",
        response_model=SimilarItems,
        responses=error_responses(404, 422, 503)
        | linked(
            200, SimilarToTheFirst=("similar_items", {"item_id": "$response.body#/items/0/item_id"})
        ),
        summary="Items similar to an item",
    )
    async def similar_items(
        item_id: Annotated[int, Path(ge=0, le=MAX_ID)],
        serving: ServingDep,
        k: Annotated[int, k_query] = default_k,
    ) -> Response:
        """The ``k`` items whose learned vectors are closest (cosine) to this item's."""
        snapshot = await _require_snapshot(serving)
        similar = snapshot.similar(item_id, k)
        if not similar and not bool(np.any(snapshot.item_ids == item_id)):
            raise ApiError(404, "unknown_item", f"item {item_id} is not in the model's catalogue")
        return json_response(
            {
                "item_id": item_id,
                "k": k,
                "items": _items(similar, serving.metadata),
                "model_version": snapshot.version,
            }
        )

    return routes


async def _from_cache(serving: Serving, user_id: int, k: int) -> Response:
    cached = await serving.cache.top_k(user_id)
    if cached is not None and len(cached.item_ids) >= k:
        serving.recent.remember(user_id, cached=cached)
        return _answer(serving, user_id, k, _sliced(cached, k), "cache", cached)
    state = await serving.cache.user_state(user_id)
    snapshot = await serving.snapshots.get()
    if snapshot is None:
        if cached is not None:  # short, but better than nothing
            return _answer(serving, user_id, k, _sliced(cached, k), "cache", cached)
        raise _no_snapshot()
    if state is None:
        return _snapshot_answer(serving, user_id, k, snapshot, None, "cold_start")
    serving.recent.remember(user_id, state=state)
    return _snapshot_answer(serving, user_id, k, snapshot, state, "computed")


async def _from_memory(serving: Serving, user_id: int, k: int) -> Response:
    recent = serving.recent.get(user_id)
    if recent is not None and recent.cached is not None and len(recent.cached.item_ids) >= k:
        cached = recent.cached
        return _answer(serving, user_id, k, _sliced(cached, k), "snapshot_fallback", cached)
    snapshot = await serving.snapshots.get()
    if snapshot is None:
        raise ApiError(
            503,
            "cache_unavailable",
            "the serving cache is unreachable and this process holds no model snapshot "
            "to fall back on; try again later",
        )
    if recent is not None and recent.state is not None:
        return _snapshot_answer(serving, user_id, k, snapshot, recent.state, "snapshot_fallback")
    return _snapshot_answer(serving, user_id, k, snapshot, None, "cold_start")


def _snapshot_answer(
    serving: Serving,
    user_id: int,
    k: int,
    snapshot: ModelSnapshot,
    state: UserState | None,
    source: Source,
) -> Response:
    listed = snapshot.recommend(state, k)
    serving.telemetry.served(source)
    return json_response(
        {
            "user_id": user_id,
            "k": k,
            "items": _items(listed, serving.metadata),
            "model_version": snapshot.version,
            "source": source,
            "updated_at": snapshot.created_at,
        }
    )


def _answer(
    serving: Serving,
    user_id: int,
    k: int,
    listed: Iterable[tuple[int, float]],
    source: Source,
    cached: UserRecommendations,
) -> Response:
    return json_response(_cached_payload(serving, user_id, k, listed, source, cached))


def _cached_payload(
    serving: Serving,
    user_id: int,
    k: int,
    listed: Iterable[tuple[int, float]],
    source: Source,
    cached: UserRecommendations,
) -> dict[str, object]:
    serving.telemetry.served(source)
    return {
        "user_id": user_id,
        "k": k,
        "items": _items(listed, serving.metadata),
        "model_version": cached.model_version,
        "source": source,
        "updated_at": cached.updated_at,
    }


_LANE_PATH = re.compile(r"/users/(\d{1,10})/recommendations")
_LANE_QUERY = re.compile(rb"(?:k=(\d{1,4}))?")


class CachedListLane:
    """A pure-ASGI lane for the hottest request: a user's list that the cache holds whole.

    ``GET /users/{id}/recommendations[?k=n]`` answered from the cache skips FastAPI's routing
    and parameter machinery (most of a request's cost on a small machine) and produces the very
    bytes the route would. Anything else — another query, a value out of bounds, a miss, a
    short list, a cache outage — goes on to the route, which validates, computes and degrades.
    """

    def __init__(self, app: ASGIApp, serving: Serving, max_k: int, route: object) -> None:
        self.app = app
        self.serving = serving
        self.max_k = max_k
        self.default_k = min(10, max_k)
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await self._answer(scope) if scope["type"] == "http" else None
        if body is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # so telemetry files it under the route's template
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _answer(self, scope: Scope) -> bytes | None:
        if scope["method"] != "GET":
            return None
        path = _LANE_PATH.fullmatch(scope["path"])
        query = _LANE_QUERY.fullmatch(scope["query_string"])
        if path is None or query is None:
            return None
        user_id = int(path[1])
        k = int(query[1]) if query[1] else self.default_k
        serving = self.serving
        if user_id > MAX_ID or not 1 <= k <= self.max_k or not serving.breaker.allows():
            return None
        try:
            cached = await serving.cache.top_k(user_id)
        except CacheUnavailableError:
            serving.cache_failed()
            return None
        if cached is None or len(cached.item_ids) < k:
            return None
        serving.recent.remember(user_id, cached=cached)
        return orjson.dumps(
            _cached_payload(serving, user_id, k, _sliced(cached, k), "cache", cached)
        )


def _sliced(cached: UserRecommendations, k: int) -> Iterable[tuple[int, float]]:
    return zip(cached.item_ids[:k], cached.scores[:k], strict=True)


def _items(
    listed: Iterable[tuple[int, float]], metadata: Mapping[int, Mapping[str, object]]
) -> list[dict[str, object]]:
    if not metadata:
        return [{"item_id": item, "score": score} for item, score in listed]
    return [
        {"item_id": item, "score": score, **metadata.get(item, NO_METADATA)}
        for item, score in listed
    ]


async def _require_snapshot(serving: Serving) -> ModelSnapshot:
    snapshot = await serving.snapshots.get()
    if snapshot is None:
        raise _no_snapshot()
    return snapshot


def _no_snapshot() -> ApiError:
    return ApiError(
        503,
        "no_snapshot",
        "no model snapshot is loaded: the trainer has not published one yet, or the cache "
        "cannot be reached",
    )
