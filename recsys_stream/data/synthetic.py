"""Synthetic MovieLens-like rating streams of any size, drawn from a seed.

The generator draws a small world, then the events of that world, with numpy alone (no Python
loop over events), so 25 million events take well under a minute on two cores:

* **items** fall into genres of unequal size and have Zipf popularity; a fraction exists at the
  start and the rest are released uniformly over the stream, so popularity drifts as new items
  arrive. Item ids increase with release time, as MovieLens ids do.
* **users** join over the stream (ids increase with joining time), have Zipf activity, a
  favourite genre and a taste for every genre.
* **sessions** make the stream bursty: a user rates a geometric number of items a minute or so
  apart, and sessions start at random times between the user's joining and the stream's end,
  so they are separated by long gaps. A session has a genre (usually the user's favourite) and
  most of its items come from it, so items co-rated in a session are related. An item is chosen,
  by popularity, among the items of its genre released by then.
* **ratings** are ``mean + user bias + item bias + taste(user, item genre) + noise``, rounded to
  stars (or half-stars) and clipped: learnable by a biased factor model. Popular items get
  higher biases, as in MovieLens.

With ``unique_pairs`` (the default) no (user, item) pair is rated twice: repeats are dropped
and more sessions are drawn until ``n_events`` remain. Each user has at least one session when
there are at least as many sessions as users.

>>> dataset = generate_synthetic(1_000, n_users=50, n_items=200, seed=7)
>>> len(dataset.ratings), list(dataset.ratings.columns)
(1000, ['user_id', 'item_id', 'rating', 'timestamp'])
>>> bool(dataset.ratings["timestamp"].is_monotonic_increasing)
True
>>> generate_synthetic(1_000, n_users=50, n_items=200, seed=7).ratings.equals(dataset.ratings)
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from recsys_stream.data.movielens import Dataset

_GENRES: Final = (
    "Drama", "Comedy", "Action", "Thriller", "Romance", "Adventure", "Crime", "Sci-Fi",
    "Horror", "Children's", "Fantasy", "Mystery", "Animation", "War", "Musical",
    "Documentary", "Western", "Film-Noir",
)  # fmt: skip
"""MovieLens's genres, most frequent first: the names of the first synthetic genres."""

_MEAN_RATING: Final = 3.0
"""Before biases and taste, which lift the mean of the drawn ratings to about 3.5 (MovieLens's)."""

_MAX_ROUNDS: Final = 50
"""Rounds of drawing more sessions to replace repeated pairs before giving up."""
_RELEASE_SLOTS: Final = 4096
"""Items are released on a grid of ``duration_s / 4096`` (under a day by default), so that the
items released by a time come from a table lookup, not a search per event."""
_GUIDE_CELLS_PER_ITEM: Final = 8
_SESSIONS_PER_CHUNK: Final = 1 << 15
_ONBOARDING_MARGIN: Final = 2
"""An onboarding session draws this many times ``onboarding_events``: repeats are dropped."""
_GENRE_SIZE_EXPONENT: Final = 0.7
"""Zipf exponent of genre sizes (and of how many users favour each genre)."""

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]


@dataclass(frozen=True)
class SyntheticConfig:
    """The knobs of :func:`generate_synthetic`; the defaults give a MovieLens-like stream."""

    n_genres: int = 18
    """Genres (clusters of related items); at most ``n_items`` are used."""
    item_popularity_exponent: float = 1.0
    """Zipf exponent of item popularity: the k-th most popular item is drawn ~ k**-exponent."""
    user_activity_exponent: float = 0.8
    """Zipf exponent of user activity (how many sessions a user has)."""
    mean_session_length: float = 20.0
    """Mean number of events in a session (geometric)."""
    mean_gap_in_session_s: float = 60.0
    """Mean seconds between two events of a session (exponential)."""
    start_timestamp: int = 946_684_800
    """Unix seconds of the stream's start (2000-01-01T00:00:00Z)."""
    duration_s: int = 10 * 365 * 86_400
    """Seconds over which users join, items are released and sessions start."""
    initial_item_fraction: float = 0.3
    """Fraction of the items released at the start; the rest arrive over the stream."""
    genre_loyalty: float = 0.6
    """Probability that a session's genre is the user's favourite rather than a random one."""
    session_focus: float = 0.8
    """Probability that an event's item is of its session's genre rather than of any genre."""
    rating_noise: float = 0.6
    """Standard deviation of the rating noise before rounding, in stars."""
    half_stars: bool = False
    """Ratings on the 0.5-5 half-star scale rather than on 1-5 stars."""
    unique_pairs: bool = True
    """Rate each (user, item) pair at most once."""
    join_fraction: float = 0.9
    """Users join uniformly over this first fraction of ``duration_s``."""
    session_start_mean_s: float | None = None
    """None: a session starts uniformly between its user's joining and the stream's end. Else
    after the joining by an exponential delay of this mean (users most active when new), cut
    at the end, except for a share ``returning_share`` of sessions that start uniformly."""
    returning_share: float = 0.1
    """With ``session_start_mean_s``: the share of sessions of users who come back at any
    time (the stream's long tail in time)."""
    onboarding_events: int = 0
    """Each user's first session has at least this many events (MovieLens asks a new user to
    rate 15 or more films); drawn with a margin for the repeats that ``unique_pairs`` drops."""

    def __post_init__(self) -> None:
        for name in (
            "genre_loyalty",
            "session_focus",
            "initial_item_fraction",
            "join_fraction",
            "returning_share",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.n_genres < 1 or self.duration_s < 1 or self.mean_session_length < 1:
            raise ValueError("n_genres, duration_s and mean_session_length must be at least 1")
        if min(self.item_popularity_exponent, self.user_activity_exponent) < 0:
            raise ValueError("Zipf exponents must be non-negative")
        if self.mean_gap_in_session_s < 0 or self.rating_noise < 0:
            raise ValueError("mean_gap_in_session_s and rating_noise must be non-negative")
        if self.onboarding_events < 0:
            raise ValueError("onboarding_events must be non-negative")
        if self.session_start_mean_s is not None and self.session_start_mean_s <= 0:
            raise ValueError("session_start_mean_s must be positive (or None)")


def generate_synthetic(
    n_events: int,
    *,
    n_users: int,
    n_items: int,
    seed: int,
    config: SyntheticConfig = SyntheticConfig(),  # frozen, so one shared default is safe
) -> Dataset:
    """Draw ``n_events`` MovieLens-like rating events; the same arguments give the same frame.

    User ids run over ``1..n_users`` and item ids over ``1..n_items`` (not every id need occur).
    The items frame has synthetic titles, release years and one genre per item; ``users`` is
    None.
    """
    if n_events < 0 or n_users < 1 or n_items < 1:
        raise ValueError("n_events must be non-negative, n_users and n_items positive")
    if config.unique_pairs and n_events > n_users * n_items:
        raise ValueError(f"{n_events} events cannot have distinct pairs of {n_users}x{n_items}")
    rng = np.random.default_rng(seed)
    catalogue = _Catalogue.draw(rng, n_items, config)
    audience = _Audience.draw(rng, n_users, catalogue, config)
    users, items, offsets = _draw_events(rng, catalogue, audience, n_events, config)
    _, order = _stable_sort(offsets)
    users, items = users[order], items[order]
    ratings = pd.DataFrame(
        {
            "user_id": users + 1,
            "item_id": items + 1,
            "rating": _rate(rng, catalogue, audience, users, items, config),
            "timestamp": offsets[order] + config.start_timestamp,
        },
        copy=False,  # the arrays are ours: spare copying them into one 2-D block
    )
    scale = (0.5, 5.0) if config.half_stars else (1.0, 5.0)
    return Dataset(
        "synthetic", ratings, catalogue.frame(config.start_timestamp), None, rating_range=scale
    )


@dataclass(frozen=True)
class _Catalogue:
    """The items (indexed from 0) and what it takes to draw them fast."""

    genre_cdf: F64
    item_genre: I64
    item_release: I64
    """Seconds after the stream's start, on a grid of ``slot_s``."""
    item_bias: F32
    slot_s: int
    n_slots: int
    by_genre: I64
    """The items ordered by genre, then release."""
    genre_start: I64
    """Where each genre starts in ``by_genre`` (and, last, its length)."""
    available_end: I64
    """``[genre * (n_slots + 1) + slot]``: where in ``by_genre`` the genre's items released by
    the slot end."""
    cumulative_weight: F64
    """Popularity summed along ``by_genre``, from 0: item ``by_genre[k]`` owns the interval
    ``[cumulative_weight[k], cumulative_weight[k + 1])``."""
    guide: I64
    """For equal cells of the total weight, the position of the item owning each cell's start."""

    @property
    def n_genres(self) -> int:
        return len(self.genre_cdf)

    @classmethod
    def draw(cls, rng: np.random.Generator, n_items: int, config: SyntheticConfig) -> _Catalogue:
        n_genres = min(config.n_genres, n_items)
        genre_cdf = np.cumsum(_zipf(np.arange(n_genres), _GENRE_SIZE_EXPONENT))
        slot_s = -(-config.duration_s // _RELEASE_SLOTS)
        n_slots = -(-config.duration_s // slot_s)
        n_initial = max(n_genres, round(config.initial_item_fraction * n_items))
        late = rng.integers(0, n_slots, n_items - n_initial, dtype=np.int64)
        # Sorted, so that item ids grow with release time.
        release_slot = np.sort(np.concatenate([np.zeros(n_initial, np.int64), late]))
        item_genre = _draw_from_cdf(rng, genre_cdf, n_items)
        # One item of every genre exists from the start, so any genre can be drawn at any time.
        item_genre[:n_genres] = rng.permutation(n_genres)
        log_popularity = -config.item_popularity_exponent * np.log(rng.permutation(n_items) + 1.0)
        item_bias = 0.15 * _standardised(log_popularity) + rng.normal(0.0, 0.3, n_items)

        keys = item_genre * (n_slots + 1) + release_slot
        by_genre = np.argsort(keys, kind="stable")
        grid = np.arange(n_genres)[:, None] * (n_slots + 1) + np.arange(n_slots + 1)
        cumulative_weight = np.concatenate([[0.0], np.cumsum(np.exp(log_popularity[by_genre]))])
        n_cells = _GUIDE_CELLS_PER_ITEM * n_items
        cell_starts = np.arange(n_cells) * (cumulative_weight[-1] / n_cells)
        return cls(
            genre_cdf=genre_cdf,
            item_genre=item_genre,
            item_release=release_slot * slot_s,
            item_bias=item_bias.astype(np.float32),
            slot_s=slot_s,
            n_slots=n_slots,
            by_genre=by_genre,
            genre_start=np.searchsorted(item_genre[by_genre], np.arange(n_genres + 1)),
            available_end=np.searchsorted(keys[by_genre], grid.ravel(), "right"),
            cumulative_weight=cumulative_weight,
            guide=np.searchsorted(cumulative_weight, cell_starts, "right") - 1,
        )

    def draw_genres(self, rng: np.random.Generator, n: int) -> I64:
        return _draw_from_cdf(rng, self.genre_cdf, n)

    def draw_items(self, rng: np.random.Generator, genres: I64, offsets: I64) -> I64:
        """For each event, an item of its genre released by its time, drawn by popularity."""
        # The items of a genre released by a slot are the run by_genre[start:end]: draw a point
        # in the run's share of the cumulative weight, then find the item that owns it.
        slot = np.minimum(offsets // self.slot_s, self.n_slots)
        end = self.available_end[genres * (self.n_slots + 1) + slot]
        start = self.genre_start[genres]
        low = self.cumulative_weight[start]
        target = low + rng.random(len(genres)) * (self.cumulative_weight[end] - low)
        # A binary search per event costs seconds at 25M events; the guide table answers most
        # with one lookup, and the few whose cell holds an item boundary (or that rounding put
        # in a neighbouring cell) are searched exactly.
        n_cells = len(self.guide)
        cell = (target * (n_cells / self.cumulative_weight[-1])).astype(np.int64)
        position = self.guide[np.minimum(cell, n_cells - 1)]
        missed = (self.cumulative_weight[position] > target) | (
            self.cumulative_weight[position + 1] <= target
        )
        position[missed] = np.searchsorted(self.cumulative_weight, target[missed], "right") - 1
        items: I64 = self.by_genre[np.clip(position, start, end - 1)]
        return items

    def frame(self, start_timestamp: int) -> pd.DataFrame:
        """The items frame of a :class:`Dataset`: ids from 1, synthetic titles, one genre."""
        n_items = len(self.item_genre)
        names = [_GENRES[g] if g < len(_GENRES) else f"Genre {g + 1}" for g in range(self.n_genres)]
        released = (self.item_release + start_timestamp).astype("datetime64[s]")
        years = released.astype("datetime64[Y]").astype(np.int64) + 1970
        return pd.DataFrame(
            {
                "title": pd.array([f"Synthetic movie {i}" for i in range(1, n_items + 1)], "str"),
                "year": pd.array(years, "Int64"),
                "genres": pd.Series([(names[g],) for g in self.item_genre], dtype=object).array,
            },
            index=pd.Index(np.arange(1, n_items + 1), name="item_id"),
        )


@dataclass(frozen=True)
class _Audience:
    """The users (indexed from 0)."""

    join: I64
    """Seconds after the stream's start; ascending, so that user ids grow with joining time."""
    activity_cdf: F64
    favourite: I64
    bias: F32
    taste: F32
    """``[user, genre]``: how much the user likes the genre."""

    @classmethod
    def draw(
        cls, rng: np.random.Generator, n_users: int, catalogue: _Catalogue, config: SyntheticConfig
    ) -> _Audience:
        favourite = catalogue.draw_genres(rng, n_users)
        taste = rng.normal(0.0, 0.3, (n_users, catalogue.n_genres)).astype(np.float32)
        taste[np.arange(n_users), favourite] += 0.7
        last_join = int(config.join_fraction * config.duration_s)
        return cls(
            join=np.sort(rng.integers(0, last_join + 1, n_users, dtype=np.int64)),
            activity_cdf=np.cumsum(_zipf(rng.permutation(n_users), config.user_activity_exponent)),
            favourite=favourite,
            bias=rng.normal(0.0, 0.35, n_users).astype(np.float32),
            taste=taste,
        )


def _draw_events(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    audience: _Audience,
    n_events: int,
    config: SyntheticConfig,
) -> tuple[I64, I64, I64]:
    """Users, items and time offsets of exactly ``n_events`` events, in order of drawing."""
    n_pairs = len(audience.join) * len(catalogue.item_genre)
    empty = np.empty(0, np.int64)
    users, items, offsets = [empty], [empty], [empty]
    seen = empty  # sorted user * n_items + item of the pairs kept so far
    kept, share_kept = 0, 1.0
    for round_ in range(_MAX_ROUNDS):
        if kept >= n_events:
            break
        # Draw a little more than is missing, inflated by the share of repeats so far; the floor
        # stops a long tail of tiny rounds.
        wanted = math.ceil((n_events - kept) / share_kept * 1.05) + 1_000
        n_sessions = math.ceil(wanted / config.mean_session_length)
        cover_all = round_ == 0 and n_sessions >= len(audience.join)
        owners = _draw_from_cdf(rng, audience.activity_cdf, n_sessions)
        if cover_all:
            owners[: len(audience.join)] = np.arange(len(audience.join))
        # Chunks of sessions keep the temporaries small enough to be reused from the heap:
        # whole-round arrays of tens of millions spend more time in page faults than in work.
        n_onboarding = len(audience.join) if cover_all and config.onboarding_events else 0
        chunks = [
            _draw_sessions(
                rng,
                catalogue,
                audience,
                owners[at : at + _SESSIONS_PER_CHUNK],
                config,
                onboarding=max(0, min(_SESSIONS_PER_CHUNK, n_onboarding - at)),
            )
            for at in range(0, n_sessions, _SESSIONS_PER_CHUNK)
        ]
        u, i, t = (np.concatenate(column) for column in zip(*chunks, strict=True))
        if config.unique_pairs:
            (u, i, t), seen, share_kept = _new_pairs(
                u, i, t, seen, n_pairs, len(catalogue.item_genre)
            )
        users.append(u)
        items.append(i)
        offsets.append(t)
        kept += len(u)
    if kept < n_events:
        raise ValueError(
            f"could not draw {n_events} distinct (user, item) pairs in {_MAX_ROUNDS} rounds; "
            "raise n_items or n_users, or set unique_pairs=False"
        )
    for _ in range(_MAX_ROUNDS if config.onboarding_events else 0):
        # Repeats dropped from an onboarding session can leave a user short: another one, put
        # first so that cutting the surplus from the tail keeps it.
        counts = np.bincount(np.concatenate(users)[:n_events], minlength=len(audience.join))
        short = np.flatnonzero(counts < config.onboarding_events)
        if len(short) == 0:
            break
        u, i, t = _draw_sessions(rng, catalogue, audience, short, config, onboarding=len(short))
        if config.unique_pairs:
            (u, i, t), seen, _ = _new_pairs(u, i, t, seen, n_pairs, len(catalogue.item_genre))
        users.insert(0, u)
        items.insert(0, i)
        offsets.insert(0, t)
    # The surplus is the tail of the last round: random sessions at random times.
    return (
        np.concatenate(users)[:n_events],
        np.concatenate(items)[:n_events],
        np.concatenate(offsets)[:n_events],
    )


def _new_pairs(
    u: I64, i: I64, t: I64, seen: I64, n_pairs: int, n_items: int
) -> tuple[tuple[I64, I64, I64], I64, float]:
    """The events whose (user, item) pair is neither in ``seen`` nor earlier among them, the
    pairs seen now, and the share of events kept."""
    keys = u * n_items + i
    sorted_keys, order = _stable_sort(keys, n_pairs - 1)
    first = np.ones(len(keys), dtype=bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    new_keys, new_at = sorted_keys[first], order[first]
    fresh = ~_contains(seen, new_keys)
    # Two sorted runs, which the stable sort (timsort) merges in linear time.
    seen = np.sort(np.concatenate([seen, new_keys[fresh]]), kind="stable")
    keep = np.sort(new_at[fresh])
    share_kept = max(len(keep) / max(len(keys), 1), 0.01)
    return (u[keep], i[keep], t[keep]), seen, share_kept


def _draw_sessions(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    audience: _Audience,
    owners: I64,
    config: SyntheticConfig,
    onboarding: int = 0,
) -> tuple[I64, I64, I64]:
    """Users, items and time offsets of the events of one session per owner; the first
    ``onboarding`` sessions are their owners' first, at their joining."""
    n_sessions = len(owners)
    lengths = rng.geometric(1.0 / config.mean_session_length, n_sessions)
    join = audience.join[owners]
    starts = join + rng.random(n_sessions) * (config.duration_s - join)
    if config.session_start_mean_s is not None:
        delay = rng.exponential(config.session_start_mean_s, n_sessions)
        early = rng.random(n_sessions) >= config.returning_share
        starts[early] = np.minimum(join + delay, config.duration_s - 1.0)[early]
    if onboarding:
        minimum = _ONBOARDING_MARGIN * config.onboarding_events
        lengths[:onboarding] = np.maximum(lengths[:onboarding], minimum)
        starts[:onboarding] = join[:onboarding]
    session_genre = audience.favourite[owners]
    wander = rng.random(n_sessions) >= config.genre_loyalty
    session_genre[wander] = catalogue.draw_genres(rng, int(wander.sum()))

    n = int(lengths.sum())
    # Time within a session: a running sum of exponential gaps, restarted at each session.
    gaps = rng.exponential(config.mean_gap_in_session_s, n)
    first = np.cumsum(lengths) - lengths
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    elapsed -= np.repeat(elapsed[first], lengths)
    elapsed += np.repeat(starts, lengths)
    offsets = elapsed.astype(np.int64)
    genres = np.repeat(session_genre, lengths)
    wander = rng.random(n) >= config.session_focus
    genres[wander] = catalogue.draw_genres(rng, int(wander.sum()))
    items = catalogue.draw_items(rng, genres, offsets)
    return np.repeat(owners, lengths), items, offsets


def _rate(
    rng: np.random.Generator,
    catalogue: _Catalogue,
    audience: _Audience,
    users: I64,
    items: I64,
    config: SyntheticConfig,
) -> F32:
    raw = audience.taste.ravel()[users * catalogue.n_genres + catalogue.item_genre[items]]
    raw += audience.bias[users]
    raw += catalogue.item_bias[items]
    raw += rng.standard_normal(len(users), dtype=np.float32) * np.float32(config.rating_noise)
    raw += np.float32(_MEAN_RATING)
    if config.half_stars:
        ratings: F32 = np.clip(np.round(raw * 2) / 2, 0.5, 5.0, dtype=np.float32)
    else:
        ratings = np.clip(np.round(raw), 1.0, 5.0, dtype=np.float32)
    return ratings


def _stable_sort(values: I64, max_value: int | None = None) -> tuple[I64, I64]:
    """Non-negative ``values`` sorted with ties in their order, and the sorting permutation."""
    if max_value is None:
        max_value = int(values.max(initial=0))
    index_bits = max(len(values) - 1, 1).bit_length()
    if max_value.bit_length() + index_bits > 63:
        order = np.argsort(values, kind="stable")
        return values[order], order
    # Sorting value * 2**index_bits + index with a plain (SIMD) sort is several times faster
    # than a stable argsort of the values, and breaks ties by index all the same.
    packed = (values << index_bits) | np.arange(len(values), dtype=np.int64)
    packed.sort()
    return packed >> index_bits, packed & ((1 << index_bits) - 1)


def _contains(sorted_values: I64, values: I64) -> npt.NDArray[np.bool_]:
    if len(sorted_values) == 0:
        return np.zeros(len(values), dtype=bool)
    position = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    found: npt.NDArray[np.bool_] = sorted_values[position] == values
    return found


def _draw_from_cdf(rng: np.random.Generator, cdf: F64, n: int) -> I64:
    drawn: I64 = np.searchsorted(cdf, rng.random(n) * cdf[-1], "right")
    return np.minimum(drawn, len(cdf) - 1)


def _zipf(ranks: npt.NDArray[np.int64], exponent: float) -> F64:
    """Weights ``(rank + 1) ** -exponent``, normalised to sum to 1."""
    weights = np.power(ranks + 1.0, -exponent, dtype=np.float64)
    normalised: F64 = weights / weights.sum()
    return normalised


def _standardised(values: F64) -> F64:
    centred: F64 = values - values.mean()
    spread = centred.std()
    return centred / spread if spread > 0 else centred
