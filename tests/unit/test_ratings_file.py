"""A user's own ratings file (``csv:PATH``): what it reads, and each way it refuses a file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recsys_stream.data import (
    RATINGS_DTYPES,
    DatasetError,
    UnknownDatasetError,
    load_dataset,
    load_dataset_from_settings,
    load_ratings_file,
)
from recsys_stream.settings import Settings


def _file(tmp_path: Path, text: str, name: str = "ratings.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_ratings_file_becomes_a_stream_in_time_order(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "user_id,item_id,rating,timestamp\n2,20,4,300\n1,10,5,100\n1,20,3,300\n3,30,1,200\n",
    )
    dataset = load_ratings_file(path)
    ratings = dataset.ratings
    assert {c: str(t) for c, t in ratings.dtypes.items()} == dict(RATINGS_DTYPES)
    assert ratings["timestamp"].tolist() == [100, 200, 300, 300]
    # Equal timestamps keep the file's order.
    assert ratings["user_id"].tolist() == [1, 3, 2, 1]
    assert dataset.rating_range == (1.0, 5.0)
    assert dataset.items.index.tolist() == [10, 30, 20]
    assert dataset.items.loc[30, "title"] == "item 30"
    assert dataset.users is None


def test_columns_are_found_by_their_usual_names_in_any_case_and_order(tmp_path: Path) -> None:
    path = _file(tmp_path, "Timestamp,Rating,movieId,UserId,comment\n5,3.5,7,1,great\n")
    ratings = load_ratings_file(path).ratings
    assert ratings.iloc[0].tolist() == [1, 7, 3.5, 5]


def test_a_tab_separated_file_is_split_on_tabs(tmp_path: Path) -> None:
    path = _file(tmp_path, "user\titem\trating\ttime\n1\t2\t4\t10\n", name="ratings.tsv")
    assert load_ratings_file(path).ratings.iloc[0].tolist() == [1, 2, 4.0, 10]


def test_date_times_and_milliseconds_become_unix_seconds(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "user,item,rating,timestamp\n1,1,4,2024-05-01T12:00:00Z\n1,2,4,2024-05-01 12:00:10\n",
    )
    assert load_ratings_file(path).ratings["timestamp"].tolist() == [1714564800, 1714564810]
    path = _file(tmp_path, "user,item,rating,timestamp\n1,1,4,1714564800123\n")
    assert load_ratings_file(path).ratings["timestamp"].tolist() == [1714564800]


def test_predictions_are_clipped_to_the_files_own_range_of_ratings(tmp_path: Path) -> None:
    path = _file(tmp_path, "user,item,rating,timestamp\n1,1,0.5,1\n1,2,3,2\n")
    assert load_ratings_file(path).rating_range == (0.5, 3.0)


def test_ratings_off_the_events_scale_are_refused_rather_than_dead_lettered_later(
    tmp_path: Path,
) -> None:
    # A rating event holds 0.5 to 5 stars: a 10-point file would lose most of its events.
    path = _file(tmp_path, "user,item,rating,timestamp\n1,1,4,1\n1,2,10,2\n")
    with pytest.raises(DatasetError, match=r"from 0.5 to 5.0 .*rescale.* e\.g\. '10'"):
        load_ratings_file(path)


def test_a_title_column_names_the_items_by_their_first_title(tmp_path: Path) -> None:
    path = _file(
        tmp_path,
        "user,item,rating,timestamp,title\n1,5,4,1,Heat\n2,5,3,2,Heat (again)\n2,6,3,3,Ran\n",
    )
    items = load_ratings_file(path).items
    assert items["title"].to_dict() == {5: "Heat", 6: "Ran"}


def test_rows_with_a_missing_field_are_dropped_with_a_warning(tmp_path: Path) -> None:
    path = _file(tmp_path, "user,item,rating,timestamp\n1,1,4,1\n2,,3,2\n3,3,5\n")
    with pytest.warns(UserWarning, match="skipped 2 row"):
        ratings = load_ratings_file(path).ratings
    assert ratings["user_id"].tolist() == [1]


def test_a_file_without_a_needed_column_is_refused_naming_it(tmp_path: Path) -> None:
    path = _file(tmp_path, "user,item,score,timestamp\n1,1,4,1\n")
    with pytest.raises(DatasetError, match=r"no column for rating: one of rating.*score"):
        load_ratings_file(path)


@pytest.mark.parametrize(
    ("row", "column", "example"),
    [
        ("u1,1,4,1", "user", "'u1'"),
        ("-1,1,4,1", "user", "'-1'"),
        ("2147483648,1,4,1", "user", "'2147483648'"),
        ("1,1.5,4,1", "item", "'1.5'"),
        ("1,1,good,1", "rating", "'good'"),
        ("1,1,4,yesterday", "timestamp", "'yesterday'"),
        ("1,1,4,1969-07-20", "timestamp", "'1969-07-20'"),
    ],
)
def test_an_unreadable_value_is_refused_naming_the_column_and_an_example(
    tmp_path: Path, row: str, column: str, example: str
) -> None:
    path = _file(tmp_path, f"user,item,rating,timestamp\n1,1,4,1\n{row}\n")
    with pytest.raises(DatasetError, match=rf"column '{column}' must hold .* e\.g\. {example}"):
        load_ratings_file(path)


def test_a_missing_or_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such ratings file"):
        load_ratings_file(tmp_path / "absent.csv")
    with pytest.raises(DatasetError, match="no ratings"):
        load_ratings_file(_file(tmp_path, "user,item,rating,timestamp\n"))


def test_csv_names_a_ratings_file_wherever_datasets_are_named(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"userId": [1, 2], "movieId": [3, 4], "rating": [4.0, 2.0], "timestamp": [9, 8]}
    )
    path = tmp_path / "mine.csv.gz"
    frame.to_csv(path, index=False)
    dataset = load_dataset_from_settings(f"csv:{path}", Settings())
    assert dataset.ratings["item_id"].tolist() == [4, 3]
    assert dataset.name == f"csv:{path}"


def test_an_unknown_name_is_a_dataset_error_that_says_what_names_exist() -> None:
    with pytest.raises(UnknownDatasetError, match=r"ml-100k.*synthetic.*csv:PATH"):
        load_dataset("ml-3m", allow_download=False)
