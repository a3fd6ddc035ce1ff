"""The wire format of the dashboard's routes (documentation and tests; the routes encode plain
dicts with orjson, as the other routes do)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from services.api.schemas import PrequentialFigures

__all__ = [
    "CatalogueEntry",
    "DashboardStatus",
    "Freshness",
    "PastRatingEntry",
    "RetrainMarker",
    "SearchResults",
    "Series",
    "UserHistory",
]


class CatalogueEntry(BaseModel):
    item_id: int = Field(examples=[50])
    title: str | None = Field(examples=["Star Wars"])
    year: int | None = Field(examples=[1977])
    genres: list[str] = Field(examples=[["Action", "Adventure", "Romance", "Sci-Fi", "War"]])


class SearchResults(BaseModel):
    """Items whose title holds every word of the query (as word prefixes), best match first,
    then the most rated."""

    query: str
    items: list[CatalogueEntry]


class PastRatingEntry(CatalogueEntry):
    rating: float = Field(examples=[5.0])
    timestamp: float = Field(description="Unix seconds of the rating.")


class UserHistory(BaseModel):
    """A user's latest ratings known to this API, newest first."""

    user_id: int
    known: bool = Field(description="Whether the model has a state for this user.")
    ratings_total: int = Field(description="How many such ratings (one per item).")
    ratings: list[PastRatingEntry]


class Series(BaseModel):
    """The metrics series downsampled for charts, as columns (one list per figure)."""

    events: list[int]
    published_at: list[float]
    model_version: list[int]
    models: dict[str, dict[str, list[float | None]]] = Field(
        description="Per model, per figure (`hr@10_window`, `ndcg@10_window`, `rmse`, ...), "
        "one value per point."
    )
    total_points: int = Field(description="Points in the full series before downsampling.")


class RetrainMarker(BaseModel):
    events: int = Field(description="Events learned when the new model version was seen.")
    model_version: int


class Freshness(BaseModel):
    """Seconds from an event's acceptance by this API to its user's list computed after it,
    over the events posted here (replayed events are not counted)."""

    p50_s: float | None
    p99_s: float | None
    samples: int
    stale: int = Field(description="Posted events whose list had not changed after 2 minutes.")


class DashboardStatus(BaseModel):
    """Everything the live view draws, in one answer."""

    writes: str = Field(
        description="`loopback`: the page may post ratings without a key (embedded mode); "
        "`key`: posting needs the API key; `disabled`: no key is configured."
    )
    live: PrequentialFigures | None = Field(description="Null until the first report.")
    users: int | None
    items: int | None
    retrains_completed: int | None
    series: Series
    retrains: list[RetrainMarker]
    events_per_second: float | None = Field(
        description="Over the latest points of the series (null with fewer than two)."
    )
    freshness: Freshness
    catalogue_items: int
    now: float = Field(description="The server's Unix time (ages are computed against it).")
