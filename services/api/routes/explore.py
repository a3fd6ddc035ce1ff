"""The explorer's reads: a title search over the item metadata, and a user's latest ratings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from recsys_stream.events import MAX_ID
from recsys_stream.serving import CacheUnavailableError, UserState
from services.api.dashboard import DashboardState
from services.api.dashboard_schemas import SearchResults, UserHistory
from services.api.deps import ServingDep
from services.api.explorer import CatalogueItem
from services.api.schemas import error_responses, json_response, linked
from services.api.state import Serving

__all__ = ["router"]

MAX_RESULTS = 50


def router() -> APIRouter:
    routes = APIRouter(tags=["explorer"])

    @routes.get(
        "/items/search",
        response_model=SearchResults,
        responses=error_responses(422)
        | linked(
            200, SimilarToTheFirst=("similar_items", {"item_id": "$response.body#/items/0/item_id"})
        ),
        summary="Find items by title",
    )
    async def search_items(
        request: Request,
        q: Annotated[str, Query(min_length=1, max_length=200, description="Title words.")],
        limit: Annotated[int, Query(ge=1, le=MAX_RESULTS)] = 10,
    ) -> Response:
        """Items whose title (or year) holds every word of ``q`` as the start of a word;
        the whole title first, then titles that start with ``q``, the most rated first."""
        found = _dashboard(request).catalogue.search(q, limit)
        return json_response({"query": q, "items": [_entry(item) for item in found]})

    @routes.get(
        "/users/{user_id}/history",
        response_model=UserHistory,
        responses=error_responses(422)
        | linked(
            200,
            Recommendations=("recommend_for_user", {"user_id": "$response.body#/user_id"}),
            SimilarToTheLatest=(
                "similar_items",
                {"item_id": "$response.body#/ratings/0/item_id"},
            ),
        ),
        summary="A user's latest ratings",
    )
    async def user_history(
        user_id: Annotated[int, Path(ge=0, le=MAX_ID)],
        request: Request,
        serving: ServingDep,
        limit: Annotated[int, Query(ge=1, le=200)] = 20,
    ) -> Response:
        """The user's latest ratings known to this API (the metadata dataset's, those the
        model has learned, and those posted here), newest first, with titles."""
        dashboard = _dashboard(request)
        state = await _state(serving, user_id)
        learned = state.seen.tolist() if state is not None else []
        ratings = dashboard.history.of(user_id, learned)
        entries = []
        for rating in ratings[:limit]:
            item = dashboard.catalogue.get(rating.item_id) or CatalogueItem(
                rating.item_id, None, None, ()
            )
            entries.append({**_entry(item), "rating": rating.rating, "timestamp": rating.timestamp})
        return json_response(
            {
                "user_id": user_id,
                "known": state is not None,
                "ratings_total": len(ratings),
                "ratings": entries,
            }
        )

    return routes


def _dashboard(request: Request) -> DashboardState:
    state: DashboardState = request.app.state.dashboard
    return state


async def _state(serving: Serving, user_id: int) -> UserState | None:
    """The user's state from the cache, else the one this process remembers."""
    if serving.breaker.allows():
        try:
            return await serving.cache.user_state(user_id)
        except CacheUnavailableError:
            serving.cache_failed()
    recent = serving.recent.get(user_id)
    return recent.state if recent is not None else None


def _entry(item: CatalogueItem) -> dict[str, object]:
    return {
        "item_id": item.item_id,
        "title": item.title,
        "year": item.year,
        "genres": list(item.genres),
    }
