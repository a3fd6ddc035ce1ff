"""A user's own ratings as a stream: a CSV (or tab-separated) file with a header row.

Wherever a dataset is named (``simulate --dataset``, ``replay --dataset``), ``csv:PATH`` names
such a file. Columns are found by their header, in any case and order; others are ignored:

========== =======================================================================
user       ``user_id``, ``userId``, ``user``: integers from 0 to 2^31 - 1
item       ``item_id``, ``itemId``, ``movieId``, ``item``: integers from 0 to 2^31 - 1
rating     ``rating``: numbers from 0.5 to 5, the rating events' scale (the file's lowest
           and highest rating are the range predictions are clipped to)
time       ``timestamp``, ``time``: Unix seconds (values above 10^11 are read as
           milliseconds), or date-times such as ``2024-05-01T12:00:00Z`` (UTC when no
           zone is given), from 1970 to 2100
title      optional: the item's name, shown by the dashboard and the API
========== =======================================================================

A file ending in ``.tsv`` or ``.tab`` is split on tabs; compressed files (``.gz``, ``.zip``,
...) are read as they are. Rows with a missing field are dropped with a warning, as for the
MovieLens files; anything else unreadable raises :class:`DatasetError` naming the file, the
column and an example of the bad value.

>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "mine.csv").write_text(
...     "userId,movieId,rating,timestamp,title\\n"
...     "7,42,4.5,1700000100,Heat\\n"
...     "3,42,2,1700000000,Heat\\n"
... )
>>> dataset = load_ratings_file(folder / "mine.csv")
>>> dataset.ratings["user_id"].tolist(), dataset.rating_range
([3, 7], (2.0, 4.5))
>>> dataset.items.loc[42, "title"]
'Heat'
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from recsys_stream.data._download import DatasetError
from recsys_stream.data.movielens import RATINGS_DTYPES, Dataset
from recsys_stream.events.rating import MAX_ID, RATING_MAX, RATING_MIN, TIMESTAMP_MAX

__all__ = ["RATINGS_FILE_PREFIX", "load_ratings_file"]

RATINGS_FILE_PREFIX: Final = "csv:"
"""The prefix of a dataset name that is a ratings file: ``csv:PATH``."""

_COLUMNS: Final = {
    "user_id": ("user_id", "userid", "user"),
    "item_id": ("item_id", "itemid", "movieid", "item"),
    "rating": ("rating",),
    "timestamp": ("timestamp", "time"),
}
_MILLISECONDS_FROM: Final = 10**11
"""Unix seconds reach 10^11 in the year 5138; millisecond timestamps are past it since 1973."""


def load_ratings_file(path: str | os.PathLike[str]) -> Dataset:
    """The ratings of ``path`` as a :class:`Dataset` in stream order (see the module)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"{path}: no such ratings file")
    separator = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise DatasetError(f"{path}: cannot read it as a table with a header: {exc}") from None
    columns = _find_columns(path, frame)
    chosen = frame[list(columns.values())]
    incomplete = chosen.isna().any(axis=1)
    if incomplete.any():
        warnings.warn(
            f"{path}: skipped {int(incomplete.sum())} row(s) with a missing field",
            stacklevel=2,
        )
        frame = frame.loc[~incomplete]
    if frame.empty:
        raise DatasetError(f"{path}: no ratings")
    item_ids = _ids(path, frame[columns["item_id"]], columns["item_id"])
    ratings = pd.DataFrame(
        {
            "user_id": _ids(path, frame[columns["user_id"]], columns["user_id"]),
            "item_id": item_ids,
            "rating": _ratings(path, frame[columns["rating"]], columns["rating"]),
            "timestamp": _seconds(path, frame[columns["timestamp"]], columns["timestamp"]),
        }
    ).astype(dict(RATINGS_DTYPES))
    ratings = ratings.sort_values("timestamp", kind="stable").reset_index(drop=True)
    title = _column(frame, ("title",))
    titles = None
    if title is not None:
        # The first title the file gives each item.
        titles = pd.Series(frame[title].to_numpy(), index=item_ids.to_numpy())
        titles = titles[~titles.index.duplicated()]
    items = _items(ratings["item_id"], titles)
    low, high = float(ratings["rating"].min()), float(ratings["rating"].max())
    return Dataset(f"{RATINGS_FILE_PREFIX}{path}", ratings, items, rating_range=(low, high))


def _column(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    by_name = {str(column).strip().lower(): str(column) for column in frame.columns}
    return next((by_name[name] for name in names if name in by_name), None)


def _find_columns(path: Path, frame: pd.DataFrame) -> dict[str, str]:
    found = {field: _column(frame, names) for field, names in _COLUMNS.items()}
    missing = [field for field, column in found.items() if column is None]
    if missing:
        wanted = "; ".join(f"{field}: one of {', '.join(_COLUMNS[field])}" for field in missing)
        raise DatasetError(
            f"{path}: no column for {wanted} (the header has {', '.join(map(str, frame.columns))})"
        )
    return {field: column for field, column in found.items() if column is not None}


def _bad(path: Path, column: str, values: pd.Series, ok: pd.Series, what: str) -> DatasetError:
    example = values[~ok].iloc[0]
    return DatasetError(
        f"{path}: column {column!r} must hold {what}; {int((~ok).sum())} value(s) do not, "
        f"e.g. {example!r}"
    )


def _ids(path: Path, values: pd.Series, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    ok = numbers.between(0, MAX_ID) & (numbers == np.floor(numbers.fillna(0)))
    if not ok.all():
        raise _bad(path, column, values, ok, f"integer ids from 0 to {MAX_ID}")
    return numbers.astype("int64")


def _ratings(path: Path, values: pd.Series, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    ok = numbers.between(RATING_MIN, RATING_MAX)
    if not ok.all():
        raise _bad(
            path,
            column,
            values,
            ok,
            f"numbers from {RATING_MIN} to {RATING_MAX} (the rating events' scale: rescale "
            "ratings on another one)",
        )
    return numbers.astype("float32")


def _seconds(path: Path, values: pd.Series, column: str) -> pd.Series:
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().any():
        # A column of numbers: Unix seconds (or milliseconds), every value.
        ok = numbers.notna() & np.isfinite(numbers.fillna(0))
        if not ok.all():
            raise _bad(path, column, values, ok, "Unix seconds or date-times")
        seconds = numbers.where(numbers.abs() < _MILLISECONDS_FROM, numbers / 1000).round()
    else:
        times = pd.to_datetime(values, errors="coerce", utc=True, format="mixed")
        ok = times.notna()
        if not ok.all():
            raise _bad(path, column, values, ok, "Unix seconds or date-times")
        seconds = (times - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    ok = seconds.between(0, TIMESTAMP_MAX)
    if not ok.all():
        raise _bad(path, column, values, ok, "times from 1970 to 2100")
    return seconds.astype("int64")


def _items(item_ids: pd.Series, titles: pd.Series | None) -> pd.DataFrame:
    ids = pd.unique(item_ids)
    names = [str(titles[item]) if titles is not None else f"item {item}" for item in ids]
    return pd.DataFrame(
        {
            "title": names,
            "year": pd.array([pd.NA] * len(ids), dtype="Int64"),
            "genres": pd.Series([()] * len(ids), dtype=object).to_numpy(),
        },
        index=pd.Index(ids, dtype="int64", name="item_id"),
    ).astype({"title": "str"})
