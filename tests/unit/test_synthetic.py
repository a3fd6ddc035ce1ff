"""The synthetic stream: its shape, its determinism and the MovieLens-like traits it promises."""

import numpy as np
import pandas as pd
import pytest

from recsys_stream.data import (
    RATINGS_DTYPES,
    DatasetError,
    SyntheticConfig,
    SyntheticSpec,
    generate_synthetic,
)
from recsys_stream.data.presets import PRESETS

N_EVENTS, N_USERS, N_ITEMS = 100_000, 5_000, 2_000


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return generate_synthetic(N_EVENTS, n_users=N_USERS, n_items=N_ITEMS, seed=42).ratings


def user_gaps(ratings: pd.DataFrame) -> np.ndarray:
    """Seconds between the consecutive events of each user."""
    by_user = ratings.sort_values(["user_id", "timestamp"], kind="stable")
    same_user = np.diff(by_user["user_id"].to_numpy()) == 0
    return np.diff(by_user["timestamp"].to_numpy())[same_user]


def test_shape_and_types(ratings: pd.DataFrame) -> None:
    assert len(ratings) == N_EVENTS
    assert ratings.dtypes.astype(str).to_dict() == dict(RATINGS_DTYPES)
    assert list(ratings.index) == list(range(N_EVENTS))
    assert ratings["user_id"].between(1, N_USERS).all()
    assert ratings["item_id"].between(1, N_ITEMS).all()
    # There are more sessions than users, so every user has one.
    assert ratings["user_id"].nunique() == N_USERS


def test_metadata() -> None:
    dataset = generate_synthetic(1_000, n_users=100, n_items=50, seed=0)
    items = dataset.items
    assert dataset.name == "synthetic"
    assert dataset.users is None
    assert items.index.tolist() == list(range(1, 51))
    assert items.index.name == "item_id"
    assert items["title"].iloc[0] == "Synthetic movie 1"
    assert str(items["year"].dtype) == "Int64"
    # Ids grow with release time, and every item has one genre.
    assert items["year"].is_monotonic_increasing
    assert items["year"].between(2000, 2010).all()
    assert all(len(genres) == 1 for genres in items["genres"])


def test_timestamps_never_decrease(ratings: pd.DataFrame) -> None:
    assert ratings["timestamp"].is_monotonic_increasing
    assert ratings["timestamp"].min() >= SyntheticConfig().start_timestamp


def test_same_seed_same_stream() -> None:
    first = generate_synthetic(5_000, n_users=200, n_items=300, seed=3)
    again = generate_synthetic(5_000, n_users=200, n_items=300, seed=3)
    other = generate_synthetic(5_000, n_users=200, n_items=300, seed=4)
    pd.testing.assert_frame_equal(first.ratings, again.ratings)
    pd.testing.assert_frame_equal(first.items, again.items)
    assert not first.ratings.equals(other.ratings)


def test_ratings_are_whole_stars(ratings: pd.DataFrame) -> None:
    values = ratings["rating"].to_numpy()
    assert set(np.unique(values)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert 3.2 < values.mean() < 3.8  # MovieLens's mean is about 3.5


def test_half_stars() -> None:
    config = SyntheticConfig(half_stars=True)
    values = generate_synthetic(10_000, n_users=200, n_items=500, seed=1, config=config).ratings
    assert set(np.unique(values["rating"])) == set(np.arange(1, 11) / 2)


def test_no_pair_is_rated_twice(ratings: pd.DataFrame) -> None:
    assert not ratings.duplicated(["user_id", "item_id"]).any()


def test_repeats_allowed_when_asked() -> None:
    config = SyntheticConfig(unique_pairs=False)
    ratings = generate_synthetic(20_000, n_users=50, n_items=100, seed=0, config=config).ratings
    assert len(ratings) == 20_000
    assert ratings.duplicated(["user_id", "item_id"]).any()


def test_item_popularity_is_skewed(ratings: pd.DataFrame) -> None:
    counts = ratings["item_id"].value_counts().to_numpy()  # descending
    assert counts[: N_ITEMS // 10].sum() > 0.4 * N_EVENTS


def test_users_rate_in_bursts(ratings: pd.DataFrame) -> None:
    gaps = user_gaps(ratings)
    # Within a session events are a minute or so apart; sessions are days apart.
    assert np.median(gaps) < 300
    assert np.median(gaps) * 100 < gaps.mean()


def test_items_keep_arriving(ratings: pd.DataFrame) -> None:
    config = SyntheticConfig()
    first_rated = ratings.groupby("item_id")["timestamp"].min()
    middle = config.start_timestamp + config.duration_s // 2
    assert (first_rated > middle).mean() > 0.2


def test_a_session_stays_in_a_genre() -> None:
    dataset = generate_synthetic(N_EVENTS, n_users=N_USERS, n_items=N_ITEMS, seed=42)
    genre = dataset.items["genres"].str[0]
    by_user = dataset.ratings.sort_values(["user_id", "timestamp"], kind="stable")
    genres = genre.loc[by_user["item_id"]].to_numpy()
    same_user = np.diff(by_user["user_id"].to_numpy()) == 0
    close = same_user & (np.diff(by_user["timestamp"].to_numpy()) < 600)
    same_genre = genres[1:] == genres[:-1]
    chance = (genre.value_counts(normalize=True) ** 2).sum()
    assert same_genre[close].mean() > 0.5 > 2 * chance


def test_ratings_are_learnable(ratings: pd.DataFrame) -> None:
    # Damped user and item biases fitted on the first half of the stream predict the second
    # half better than the global mean does.
    half = len(ratings) // 2
    past, future = ratings.iloc[:half], ratings.iloc[half:]
    mean = past["rating"].mean()

    def damped_bias(residual: pd.Series, ids: pd.Series) -> pd.Series:
        sums = residual.groupby(ids.to_numpy()).agg(["sum", "count"])
        return sums["sum"] / (sums["count"] + 5)

    user_bias = damped_bias(past["rating"] - mean, past["user_id"])
    residual = past["rating"] - mean - user_bias.reindex(past["user_id"]).to_numpy()
    item_bias = damped_bias(residual, past["item_id"])
    predicted = (
        mean
        + user_bias.reindex(future["user_id"]).fillna(0.0).to_numpy()
        + item_bias.reindex(future["item_id"]).fillna(0.0).to_numpy()
    )
    truth = future["rating"].to_numpy()
    rmse_biased = np.sqrt(np.mean((truth - predicted) ** 2))
    rmse_mean = np.sqrt(np.mean((truth - mean) ** 2))
    assert rmse_biased < 0.96 * rmse_mean


def test_no_events() -> None:
    ratings = generate_synthetic(0, n_users=3, n_items=3, seed=0).ratings
    assert ratings.empty
    assert ratings.dtypes.astype(str).to_dict() == dict(RATINGS_DTYPES)


@pytest.mark.parametrize(
    ("n_events", "n_users", "n_items", "match"),
    [
        (-1, 10, 10, "non-negative"),
        (10, 0, 10, "positive"),
        (101, 10, 10, "distinct pairs"),
    ],
)
def test_impossible_requests(n_events: int, n_users: int, n_items: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_synthetic(n_events, n_users=n_users, n_items=n_items, seed=0)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="session_focus"):
        SyntheticConfig(session_focus=1.5)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("synthetic", SyntheticSpec(events=100_000, users=943, items=1_682, seed=0)),
        (
            "synthetic:25M:users=162541:items=60000:seed=3",
            SyntheticSpec(25_000_000, 162_541, 60_000, 3),
        ),
        ("synthetic:2.5k:seed=1", SyntheticSpec(2_500, 24, 266, 1)),
        ("ml-1m", None),
        ("synthetic-like", None),
    ],
)
def test_a_synthetic_name_gives_its_spec(name: str, expected: SyntheticSpec | None) -> None:
    assert SyntheticSpec.parse(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "synthetic:lots",
        "synthetic:1k:users=0",
        "synthetic:1k:colour=3",
        "synthetic:1k:items",
        "synthetic:ml-10m-like",
    ],
)
def test_a_synthetic_name_that_cannot_be_read_raises_a_dataset_error(name: str) -> None:
    with pytest.raises(DatasetError, match="cannot read"):
        SyntheticSpec.parse(name)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_follows_its_published_statistics(name: str) -> None:
    preset = PRESETS[name]
    spec = SyntheticSpec.parse(f"synthetic:{name}")
    assert spec is not None
    ratings = spec.generate().ratings
    assert len(ratings) == preset.events
    assert ratings.user_id.nunique() == preset.users
    assert ratings.item_id.max() <= preset.items
    assert ratings.groupby("user_id").size().min() >= preset.config.onboarding_events
    assert not ratings.duplicated(["user_id", "item_id"]).any()
    span = ratings.timestamp.iloc[-1] - ratings.timestamp.iloc[0]
    assert span <= preset.config.duration_s
    assert span >= 0.9 * preset.config.duration_s
    stars = set(ratings.rating.unique().tolist())
    assert (0.5 in stars) == preset.config.half_stars


def test_the_ml_1m_like_preset_rates_most_in_its_first_year() -> None:
    spec = SyntheticSpec.parse("synthetic:ml-1m-like")
    assert spec is not None
    ratings = spec.generate().ratings
    first_year = ratings.timestamp < spec.config.start_timestamp + 365 * 86_400
    assert first_year.mean() > 0.7
