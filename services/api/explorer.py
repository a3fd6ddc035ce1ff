"""What the dashboard's explorer reads besides the cache: the item catalogue and who rated what.

- :class:`Catalogue`: the item metadata, searchable by title;
- :class:`RatingHistory`: the ratings this process knows (the metadata dataset's, and those
  posted through it), per user, newest first;
- :class:`RecordingPublisher`: the API's publisher, noting each accepted event in the history
  and the :class:`~services.api.dashboard.FreshnessTracker` before handing it on.

The history cannot come from the cache: a user's state holds the items the model saw, not the
ratings given. The metadata dataset's ratings fill them in, filtered by that state so a replay
under way never shows a rating the model has not learned yet.
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys_stream.events import RatingEvent
from recsys_stream.serving import EventPublisher

__all__ = ["Catalogue", "CatalogueItem", "PastRating", "RatingHistory", "RecordingPublisher"]

Published = Callable[[list[RatingEvent], float], None]
"""Told of each published batch, with the Unix time it was accepted."""

_WORD = re.compile(r"[a-z0-9]+")


def _words(text: str) -> list[str]:
    """Lower-case words without accents: "Amélie" is found by "amelie"."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _WORD.findall(plain.lower())


@dataclass(frozen=True, slots=True)
class CatalogueItem:
    item_id: int
    title: str | None
    year: int | None
    genres: tuple[str, ...]


class Catalogue:
    """The items' titles, years and genres, and a title search ranked by how well the title
    matches, then by how often the item was rated."""

    def __init__(
        self, metadata: Mapping[int, Mapping[str, object]], popularity: Mapping[int, int]
    ) -> None:
        self._items: dict[int, CatalogueItem] = {}
        self._index: list[tuple[int, list[str], str]] = []
        for item_id, fields in metadata.items():
            title = fields.get("title")
            year = fields.get("year")
            genres = fields.get("genres")
            item = CatalogueItem(
                item_id,
                title if isinstance(title, str) else None,
                year if isinstance(year, int) else None,
                tuple(str(g) for g in genres) if isinstance(genres, list | tuple) else (),
            )
            self._items[item_id] = item
            if item.title:
                words = _words(item.title) + ([str(item.year)] if item.year else [])
                self._index.append((item_id, words, " ".join(words)))
        self._popularity = dict(popularity)

    def __len__(self) -> int:
        return len(self._items)

    def get(self, item_id: int) -> CatalogueItem | None:
        return self._items.get(item_id)

    def search(self, query: str, limit: int) -> list[CatalogueItem]:
        """Items whose title (or year) holds every word of ``query`` as a word prefix: whole
        title first, then titles that start with the query, then any other match; the most
        rated first within each."""
        wanted = _words(query)
        if not wanted:
            return []
        phrase = " ".join(wanted)
        found: list[tuple[int, int, str, int]] = []
        for item_id, words, joined in self._index:
            if not all(any(word.startswith(w) for word in words) for w in wanted):
                continue
            title_words = joined.split(" ")
            if self._items[item_id].year:
                title_words = title_words[:-1]
            if " ".join(title_words) == phrase:
                rank = 0
            elif joined.startswith(phrase):
                rank = 1
            else:
                rank = 2
            found.append((rank, -self._popularity.get(item_id, 0), joined, item_id))
        found.sort()
        return [self._items[item_id] for *_, item_id in found[:limit]]


@dataclass(frozen=True, slots=True)
class PastRating:
    item_id: int
    rating: float
    timestamp: float


class RatingHistory:
    """The ratings this process knows, per user: the metadata dataset's (sorted by user once,
    sliced per request) and the events posted through this API (kept in memory, bounded)."""

    def __init__(self, ratings: pd.DataFrame | None, posted_per_user: int = 200) -> None:
        if ratings is None or ratings.empty:
            self._users: npt.NDArray[np.int64] = np.zeros(0, np.int64)
            self._items = self._users
            self._ratings: npt.NDArray[np.float64] = np.zeros(0)
            self._times = self._ratings
        else:
            order = np.lexsort(
                (ratings["timestamp"].to_numpy(), ratings["user_id"].to_numpy(np.int64))
            )
            self._users = ratings["user_id"].to_numpy(np.int64)[order]
            self._items = ratings["item_id"].to_numpy(np.int64)[order]
            self._ratings = ratings["rating"].to_numpy(np.float64)[order]
            self._times = ratings["timestamp"].to_numpy(np.float64)[order]
        self._posted: dict[int, deque[PastRating]] = {}
        self._posted_per_user = posted_per_user
        self._lock = threading.Lock()

    def popularity(self) -> dict[int, int]:
        """Ratings per item in the dataset (ranks search results)."""
        items, counts = np.unique(self._items, return_counts=True)
        return dict(zip(items.tolist(), counts.tolist(), strict=True))

    def record(self, events: Iterable[RatingEvent]) -> None:
        with self._lock:
            for event in events:
                kept = self._posted.setdefault(event.user_id, deque(maxlen=self._posted_per_user))
                kept.append(PastRating(event.item_id, event.rating, event.timestamp))

    def of(self, user_id: int, learned: Iterable[int] | None) -> list[PastRating]:
        """The user's ratings, newest first, one per item (the latest).

        ``learned`` (the items the model saw for the user) filters the dataset's ratings;
        None keeps them all. Posted events are always shown: they were accepted here.
        """
        start, stop = np.searchsorted(self._users, [user_id, user_id + 1])
        allowed = None if learned is None else {int(item) for item in learned}
        newest: dict[int, PastRating] = {}
        for j in range(int(stop) - 1, int(start) - 1, -1):
            item = int(self._items[j])
            if item not in newest and (allowed is None or item in allowed):
                newest[item] = PastRating(item, float(self._ratings[j]), float(self._times[j]))
        with self._lock:
            posted = list(self._posted.get(user_id, ()))
        for rating in posted:
            known = newest.get(rating.item_id)
            if known is None or known.timestamp <= rating.timestamp:
                newest[rating.item_id] = rating
        return sorted(newest.values(), key=lambda r: (-r.timestamp, r.item_id))


class RecordingPublisher:
    """An :class:`~recsys_stream.serving.EventPublisher` that notes what it published."""

    def __init__(
        self, inner: EventPublisher, history: RatingHistory, on_published: Published
    ) -> None:
        self._inner = inner
        self._history = history
        self._on_published = on_published

    async def publish(self, events: list[RatingEvent]) -> None:
        await self._inner.publish(events)
        self._history.record(events)
        self._on_published(events, time.time())

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def close(self) -> None:
        await self._inner.close()
