"""MovieLens: every official variant, loaded into one typed :class:`Dataset`.

A variant is looked for in three places, in order:

1. ``data_dir/<name>/``, a folder named as GroupLens names it (``ml-10m`` may also be left as
   the ``ml-10M100K`` folder its zip holds);
2. ``cache_dir/<name>/``, where an earlier download was verified and unpacked;
3. GroupLens itself: the zip is downloaded into ``cache_dir``, its MD5 checked against the
   published one, then unpacked (see :mod:`recsys_stream.data._download`).

Offline with no local copy, :class:`DatasetUnavailableError` says what was looked for and how to
provide it. The ratings come out in stream order, the order of the prequential protocol: by
timestamp, ties keeping the order of the dataset's file.

A folder laid out like ``ml-latest-small`` (here written by hand) loads as follows:

>>> import shutil, tempfile
>>> from pathlib import Path
>>> root = Path(tempfile.mkdtemp())
>>> folder = root / "ml-latest-small"
>>> folder.mkdir()
>>> _ = (folder / "ratings.csv").write_text(
...     "userId,movieId,rating,timestamp\\n1,2,4.5,964982703\\n1,1,4.0,964981247\\n"
... )
>>> _ = (folder / "movies.csv").write_text(
...     'movieId,title,genres\\n1,Toy Story (1995),Animation|Comedy\\n'
...     '2,"American President, The (1995)",Comedy|Drama\\n'
... )
>>> dataset = load_dataset("ml-latest-small", data_dir=root, allow_download=False)
>>> dataset.ratings
   user_id  item_id  rating  timestamp
0        1        1     4.0  964981247
1        1        2     4.5  964982703
>>> dataset.items.loc[2, "title"], dataset.items.loc[2, "year"], dataset.items.loc[2, "genres"]
('American President, The', np.int64(1995), ('Comedy', 'Drama'))
>>> shutil.rmtree(root)
"""

from __future__ import annotations

import csv
import http.client
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.error import HTTPError

import numpy as np
import pandas as pd

from recsys_stream.data._download import (
    DatasetError,
    DatasetUnavailableError,
    UnknownDatasetError,
    download_verified,
    fetch_published_md5,
)
from recsys_stream.settings import DataSettings

RATINGS_DTYPES: Final[Mapping[str, str]] = {
    "user_id": "int64",
    "item_id": "int64",
    "rating": "float32",
    "timestamp": "int64",
}
"""The columns of :attr:`Dataset.ratings`, in order, and their dtypes."""

_NULLABLE_DTYPES: Final = {"int64": "Int64", "float32": "Float32"}

BASE_URL: Final = "https://files.grouplens.org/datasets/movielens"

Format = Literal["ml-100k", "dat", "csv"]
"""How a variant's files are laid out: ``u.data``/``u.item``, ``::``-separated, or CSV."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Rating events in stream order, with item (and, where known, user) metadata.

    ``ratings`` has exactly the columns of :data:`RATINGS_DTYPES` (timestamps in Unix seconds),
    sorted by timestamp with ties in the order of the source, and index ``0..n-1``. ``items`` is
    indexed by ``item_id`` with columns ``title`` (str), ``year`` (nullable ``Int64``) and
    ``genres`` (a tuple of str, empty when unknown). ``users``, indexed by ``user_id``, holds
    ``age``, ``gender``, ``occupation`` and ``zip`` where the variant has them, else is None.
    """

    name: str
    ratings: pd.DataFrame = field(repr=False)
    items: pd.DataFrame = field(repr=False)
    users: pd.DataFrame | None = field(default=None, repr=False)
    rating_range: tuple[float, float] = (1.0, 5.0)
    """The scale of the ratings: predictions are clipped to it."""

    def __post_init__(self) -> None:
        dtypes = {column: str(dtype) for column, dtype in self.ratings.dtypes.items()}
        if dtypes != dict(RATINGS_DTYPES):
            raise ValueError(f"ratings must have columns {dict(RATINGS_DTYPES)}, got {dtypes}")


@dataclass(frozen=True)
class Variant:
    """One MovieLens release as GroupLens publishes it."""

    name: str
    folder: str
    """The top folder inside the zip (``ml-10M100K`` for ``ml-10m``, else the name)."""
    format: Format
    md5: str | None
    """The published MD5 of the zip; None where GroupLens updates the zip in place, so the
    ``.md5`` published beside it is fetched at download time instead."""
    url: str

    @property
    def rating_range(self) -> tuple[float, float]:
        """Whole stars for ml-100k and ml-1m, half stars from ml-10m on."""
        return (1.0, 5.0) if self.name in ("ml-100k", "ml-1m") else (0.5, 5.0)

    @property
    def md5_url(self) -> str:
        return f"{self.url}.md5"


def _variant(name: str, format: Format, md5: str | None, folder: str | None = None) -> Variant:
    return Variant(name, folder or name, format, md5, f"{BASE_URL}/{name}.zip")


# MD5s of the frozen releases, as GroupLens publishes them in <name>.zip.md5. The first five are
# hard-coded alike by public loaders, e.g. eli-osherovich/papers_with_code
# (datasets/movielens/dl_config.py); ml-32m's by several independent public scripts that check it
# against https://files.grouplens.org/datasets/movielens/ml-32m.zip.md5 (e.g. with
# pooch.retrieve(known_hash="md5:d472...")).
VARIANTS: Final[dict[str, Variant]] = {
    variant.name: variant
    for variant in (
        _variant("ml-100k", "ml-100k", "0e33842e24a9c977be4e0107933c0723"),
        _variant("ml-1m", "dat", "c4d9eecfca2ab87c1945afe126590906"),
        _variant("ml-10m", "dat", "ce571fd55effeba0271552578f2648bd", folder="ml-10M100K"),
        _variant("ml-20m", "csv", "cd245b17a1ae2cc31bb14903e1204af3"),
        _variant("ml-25m", "csv", "6b51fb2759a8657d3bfcbfc42b592ada"),
        _variant("ml-32m", "csv", "d472be332d4daa821edc399621853b57"),
        _variant("ml-latest-small", "csv", None),
        _variant("ml-latest", "csv", None),
    )
}
"""Every MovieLens variant this module loads, by name."""

_RATINGS_FILE: Final[Mapping[Format, str]] = {
    "ml-100k": "u.data",
    "dat": "ratings.dat",
    "csv": "ratings.csv",
}


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
) -> Dataset:
    """Load a MovieLens variant from ``data_dir``, the cache, or GroupLens (in that order).

    ``cache_dir`` defaults to that of :class:`recsys_stream.settings.DataSettings`. Raises
    ``ValueError`` for an unknown name, :class:`DatasetUnavailableError` when the variant is on no
    local path and cannot be downloaded, and :class:`DatasetChecksumError` when a download does
    not match its published MD5.
    """
    variant = VARIANTS.get(name)
    if variant is None:
        raise UnknownDatasetError(
            f"unknown dataset {name!r}; known: {', '.join(VARIANTS)}, synthetic[:...] "
            "(a generated stream) and csv:PATH (a file of one's own ratings)"
        )
    folder = _locate(
        variant,
        None if data_dir is None else Path(data_dir),
        DataSettings().cache_dir if cache_dir is None else Path(cache_dir),
        allow_download,
    )
    ratings, items, users = _READERS[variant.format](folder)
    return Dataset(name, _in_stream_order(ratings), items, users, rating_range=variant.rating_range)


# --- Finding the files -------------------------------------------------------------------------


def _locate(variant: Variant, data_dir: Path | None, cache_dir: Path, allow_download: bool) -> Path:
    ratings_file = _RATINGS_FILE[variant.format]
    local = [data_dir / variant.name, data_dir / variant.folder] if data_dir is not None else []
    for folder in [*local, cache_dir / variant.name]:
        if (folder / ratings_file).is_file():
            return folder
    if not allow_download:
        raise DatasetUnavailableError(
            _unavailable(variant, data_dir, cache_dir, "downloading is disabled")
        )
    try:
        return _download(variant, cache_dir)
    except (OSError, http.client.HTTPException) as exc:
        # URLError's text wraps its cause ("<urlopen error [Errno 111] ...>"): show the cause.
        reason = exc if isinstance(exc, HTTPError) else getattr(exc, "reason", exc)
        raise DatasetUnavailableError(
            _unavailable(
                variant, data_dir, cache_dir, f"downloading {variant.url} failed: {reason}"
            )
        ) from exc


def _unavailable(variant: Variant, data_dir: Path | None, cache_dir: Path, why: str) -> str:
    where = f"RECSYS_DATA_DIR ({data_dir})" if data_dir is not None else "RECSYS_DATA_DIR (unset)"
    holds = f"{variant.name}/" + (
        f" (or {variant.folder}/)" if variant.folder != variant.name else ""
    )
    return (
        f"{variant.name} is not in {where} nor in the cache ({cache_dir}), and {why}. "
        f"Download {variant.url} by hand, unzip it, and set RECSYS_DATA_DIR to the folder "
        f"that holds {holds}."
    )


def _download(variant: Variant, cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    archive = cache_dir / f"{variant.name}.zip"
    # An archive already here was renamed into place only after its MD5 matched: a run that was
    # stopped while unpacking resumes from it rather than downloading again.
    if not archive.is_file():
        md5 = variant.md5 or fetch_published_md5(variant.md5_url)
        download_verified(variant.url, archive, md5=md5, description=variant.name)
    target = cache_dir / variant.name
    # Unpack beside the target and rename: a half-unpacked folder never bears the name that
    # ``_locate`` trusts.
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=f".{variant.name}.") as scratch:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(scratch)
        unpacked = Path(scratch) / variant.folder
        if not unpacked.is_dir():
            raise DatasetError(f"{archive} has no {variant.folder}/ folder")
        unpacked.rename(target)
    archive.unlink()
    return target


# --- Reading the files -------------------------------------------------------------------------

_Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]

_GENRES_100K: Final = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
"""The 19 genre flags of ``u.item``, in the order of ``u.genre``."""

_NO_GENRES: Final = frozenset({"unknown", "(no genres listed)"})
"""Placeholders that MovieLens writes for "genre unknown"; they become an empty tuple."""

_OCCUPATIONS_1M: Final = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip
"""ml-1m's occupation codes 0-20, as its README lists them."""

# A title ends with its year, or a span of years for a series: "Heat (1995)", "Fawlty Towers
# (1975-1979)"; ml-latest has titles with no year at all.
_TITLE_YEAR: Final = r"^(?P<title>.*?)\s*\((?P<year>\d{4})(?:\s*[-–]\s*(?:\d{4})?\s*)?\)\s*$"


def _read_100k(folder: Path) -> _Tables:
    ratings = _read_ratings(folder / "u.data", [0, 1, 2, 3], sep="\t", header=None)
    items = pd.read_csv(
        folder / "u.item",
        sep="|",
        header=None,
        names=["item_id", "title", "release_date", "video_release_date", "url", *_GENRES_100K],
        usecols=["item_id", "title", "release_date", *_GENRES_100K],
        index_col="item_id",
        encoding="latin-1",
        quoting=csv.QUOTE_NONE,
        dtype={"item_id": "int64", "title": "str", "release_date": "str"}
        | dict.fromkeys(_GENRES_100K, "int8"),
        keep_default_na=False,
    )
    title, year = _split_title_year(items["title"])
    # A few titles lack the year ("unknown") or bury it ("... (1995) (V)"): the release date
    # ("01-Jan-1995") supplies it then.
    release_year = pd.to_numeric(items["release_date"].str[-4:], errors="coerce").astype("Int64")
    flags = items[list(_GENRES_100K)].to_numpy(dtype=bool)
    names = np.array(_GENRES_100K, dtype=object)
    genres = [_genre_tuple(names[row]) for row in flags]
    users = pd.read_csv(
        folder / "u.user",
        sep="|",
        header=None,
        names=["user_id", "age", "gender", "occupation", "zip"],
        index_col="user_id",
        quoting=csv.QUOTE_NONE,
        dtype={"user_id": "int64", "age": "int64", "gender": "str", "occupation": "str"}
        | {"zip": "str"},
        keep_default_na=False,
    )
    return ratings, _items_frame(items.index, title, year.fillna(release_year), genres), users


def _read_dat(folder: Path) -> _Tables:
    # Splitting on the single character ":" lets the C parser read "1::122::5::838985046" as
    # seven fields, four of them the values: far faster than a regex separator.
    fields = [0, 2, 4, 6]
    ratings = _read_ratings(folder / "ratings.dat", fields, sep=":", header=None, usecols=fields)
    movies = _read_double_colon(folder / "movies.dat", 3)
    title, year = _split_title_year(pd.Series([row[1] for row in movies], dtype="str"))
    genres = [_genre_tuple(row[2].split("|")) for row in movies]
    index = pd.Index([int(row[0]) for row in movies], dtype="int64")
    items = _items_frame(index, title, year, genres)
    users_file = folder / "users.dat"  # ml-1m only
    if not users_file.is_file():
        return ratings, items, None
    rows = _read_double_colon(users_file, 5)
    users = pd.DataFrame(
        {
            "age": pd.array([int(row[2]) for row in rows], dtype="int64"),
            "gender": pd.array([row[1] for row in rows], dtype="str"),
            "occupation": pd.array([_OCCUPATIONS_1M[int(row[3])] for row in rows], dtype="str"),
            "zip": pd.array([row[4] for row in rows], dtype="str"),
        },
        index=pd.Index([int(row[0]) for row in rows], dtype="int64", name="user_id"),
    )
    return ratings, items, users


def _read_csv(folder: Path) -> _Tables:
    ratings = _read_ratings(folder / "ratings.csv", ["userId", "movieId", "rating", "timestamp"])
    movies = pd.read_csv(
        folder / "movies.csv",
        dtype={"movieId": "int64", "title": "str", "genres": "str"},
        index_col="movieId",
        encoding="utf-8",
        # A movie may be called "NA" or "Null": no value in this file is missing.
        keep_default_na=False,
    )
    title, year = _split_title_year(movies["title"])
    genres = [_genre_tuple(value.split("|")) for value in movies["genres"]]
    return ratings, _items_frame(movies.index, title, year, genres), None


_READERS: Final[Mapping[Format, Callable[[Path], _Tables]]] = {
    "ml-100k": _read_100k,
    "dat": _read_dat,
    "csv": _read_csv,
}


def _read_ratings(path: Path, fields: list[str] | list[int], **options: Any) -> pd.DataFrame:
    """Read a ratings file with the C parser and explicit dtypes; drop incomplete rows.

    ``fields`` names the four source columns (header names, or positions in a file without a
    header) in the order of :data:`RATINGS_DTYPES`. A row with missing fields (a truncated last
    line) is dropped with a warning; any other defect raises ``ValueError`` naming the file.
    """
    dtypes = dict(zip(fields, RATINGS_DTYPES.values(), strict=True))
    try:
        try:
            frame: pd.DataFrame = pd.read_csv(path, dtype=dtypes, engine="c", **options)
        except ValueError:
            # int64 columns cannot hold the gaps of a truncated row: parse again with nullable
            # dtypes, which costs only on such a file, and drop the rows with gaps.
            nullable = {key: _NULLABLE_DTYPES[dtype] for key, dtype in dtypes.items()}
            frame = pd.read_csv(path, dtype=nullable, engine="c", **options)
            incomplete = frame.isna().any(axis=1)
            warnings.warn(
                f"{path}: skipped {int(incomplete.sum())} incomplete row(s); "
                "is the file truncated?",
                stacklevel=4,
            )
            frame = frame.loc[~incomplete].astype(dtypes)
    except ValueError as exc:
        exc.add_note(f"while reading {path}")
        raise
    if list(frame.columns) != list(fields):
        raise ValueError(f"{path}: expected columns {fields}, got {list(frame.columns)}")
    frame.columns = pd.Index(list(RATINGS_DTYPES))
    return frame


def _read_double_colon(path: Path, n_fields: int) -> list[list[str]]:
    """The fields of a small ``::``-separated file; titles may hold ":", so split on "::"."""
    raw = path.read_bytes()
    # ml-1m's movies.dat is Latin-1 while later files are UTF-8: try the stricter first.
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    rows = [line.split("::") for line in text.splitlines() if line]
    complete = [row for row in rows if len(row) == n_fields]
    if len(complete) != len(rows):
        warnings.warn(
            f"{path}: skipped {len(rows) - len(complete)} incomplete row(s); "
            "is the file truncated?",
            stacklevel=4,
        )
    return complete


def _split_title_year(titles: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Split "Heat (1995)" into "Heat" and 1995; a title without a year keeps its text."""
    parts = titles.str.extract(_TITLE_YEAR)
    title = parts["title"].where(parts["title"].str.len() > 0, titles.str.strip())
    year = pd.to_numeric(parts["year"]).astype("Int64")
    return title.astype("str"), year


def _genre_tuple(names: Any) -> tuple[str, ...]:
    return tuple(str(name) for name in names if name not in _NO_GENRES)


def _items_frame(
    index: pd.Index, title: pd.Series, year: pd.Series, genres: list[tuple[str, ...]]
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "title": title.to_numpy(),
            "year": year.to_numpy(),
            "genres": pd.Series(genres, dtype=object).to_numpy(),
        },
        index=pd.Index(index, dtype="int64", name="item_id"),
    )
    return frame.astype({"title": "str", "year": "Int64"})


def _in_stream_order(ratings: pd.DataFrame) -> pd.DataFrame:
    # Official files are rarely in time order; when one is, skip the sort. A stable sort keeps
    # the file's order among equal timestamps, which fixes the stream order of the protocol.
    if not ratings["timestamp"].is_monotonic_increasing:
        ratings = ratings.sort_values("timestamp", kind="stable")
    return ratings.reset_index(drop=True)
