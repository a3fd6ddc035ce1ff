"""The MovieLens loader: every file format, stream order, and where the files come from.

Every test writes its own tiny files: MovieLens data may not be redistributed, so the real
ml-100k is read only from ``RECSYS_DATA_DIR`` when it is set.
"""

import hashlib
import io
import os
import socket
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recsys_stream.data import (
    RATINGS_DTYPES,
    VARIANTS,
    Dataset,
    DatasetChecksumError,
    DatasetUnavailableError,
    load_dataset,
    load_dataset_from_settings,
)
from recsys_stream.settings import Settings

# --- Tiny files in each layout ------------------------------------------------------------------

# Two ties (timestamps 100 and 200) whose order must follow the file.
RATINGS = [(1, 10, 3, 200), (2, 20, 4, 100), (3, 10, 5, 200), (1, 20, 2, 100), (2, 30, 1, 50)]
STREAM = [
    (2, 30, 1.0, 50),
    (2, 20, 4.0, 100),
    (1, 20, 2.0, 100),
    (1, 10, 3.0, 200),
    (3, 10, 5.0, 200),
]


def genre_flags(*indices: int) -> str:
    return "|".join("1" if i in indices else "0" for i in range(19))


def write_100k(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in RATINGS))
    url = "http://us.imdb.com/M/title-exact?x"
    items = [
        f"10|Toy Story (1995)|01-Jan-1995||{url}|{genre_flags(3, 4, 5)}",
        f"20|Café au lait (1993)|01-Jan-1993||{url}|{genre_flags(8)}",
        f"30|Land Before Time III (1995) (V)|01-Jan-1995||{url}|{genre_flags(3)}",
        f"40|unknown|||{url}|{genre_flags(0)}",
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text(
        "1|24|M|technician|85711\n2|53|F|other|94043\n3|23|M|writer|T8H1N\n"
    )
    return folder


def write_dat(folder: Path, *, users: bool, encoding: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r}::{t}\n" for u, i, r, t in RATINGS))
    movies = [
        "10::Star Wars: Episode IV - A New Hope (1977)::Action|Adventure|Sci-Fi",
        "20::Misérables, Les (1995)::Drama|Musical",
        "30::City of Lost Children, The (Cité des enfants perdus, La) (1995)::Adventure",
    ]
    (folder / "movies.dat").write_bytes(("\n".join(movies) + "\n").encode(encoding))
    if users:
        (folder / "users.dat").write_text(
            "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::0::02460\n"
        )
    return folder


MOVIES_CSV = "\n".join(
    [
        "movieId,title,genres",
        '10,"American President, The (1995)",Comedy|Drama|Romance',
        '20,"""Great Performances"" Cats (1998)",Musical',
        "30,Babylon 5,Sci-Fi",
        "40,Fawlty Towers (1975-1979),Comedy",
        "50,Millions (2004) ,(no genres listed)",
        "60,NA,Drama",
        "",
    ]
)


def write_csv(folder: Path, *, half_stars: bool = True) -> Path:
    folder.mkdir(parents=True)
    rows = [(u, i, r - 0.5 if half_stars else r, t) for u, i, r, t in RATINGS]
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    )
    (folder / "movies.csv").write_text(MOVIES_CSV)
    return folder


def assert_stream(dataset: Dataset, ratings: list[tuple[int, int, float, int]]) -> None:
    frame = dataset.ratings
    assert frame.dtypes.astype(str).to_dict() == dict(RATINGS_DTYPES)
    assert list(frame.index) == list(range(len(frame)))
    assert list(frame.itertuples(index=False, name=None)) == ratings


# --- Formats ---------------------------------------------------------------------------------


def test_ml_100k_layout(tmp_path: Path) -> None:
    write_100k(tmp_path / "ml-100k")
    dataset = load_dataset("ml-100k", data_dir=tmp_path, allow_download=False)

    assert dataset.name == "ml-100k"
    assert_stream(dataset, STREAM)
    items = dataset.items
    assert items.index.name == "item_id"
    assert items.index.dtype == np.int64
    assert items.loc[10].to_dict() == {
        "title": "Toy Story",
        "year": 1995,
        "genres": ("Animation", "Children's", "Comedy"),
    }
    assert items.loc[20, "title"] == "Café au lait"  # u.item is Latin-1
    # No year at the end of the title: the release date gives it.
    assert items.loc[30, "year"] == 1995
    assert items.loc[40, "title"] == "unknown"
    assert items.loc[40, "year"] is pd.NA
    assert items.loc[40, "genres"] == ()
    assert str(items["year"].dtype) == "Int64"
    assert dataset.users is not None
    assert dataset.users.loc[3].to_dict() == {
        "age": 23,
        "gender": "M",
        "occupation": "writer",
        "zip": "T8H1N",
    }


def test_ml_1m_layout(tmp_path: Path) -> None:
    write_dat(tmp_path / "ml-1m", users=True, encoding="latin-1")
    dataset = load_dataset("ml-1m", data_dir=tmp_path, allow_download=False)

    assert_stream(dataset, STREAM)
    assert dataset.items.loc[10, "title"] == "Star Wars: Episode IV - A New Hope"
    assert dataset.items.loc[10, "genres"] == ("Action", "Adventure", "Sci-Fi")
    assert dataset.items.loc[20, "title"] == "Misérables, Les"
    assert dataset.items.loc[30, "year"] == 1995
    assert dataset.users is not None
    assert dataset.users.index.name == "user_id"
    assert dataset.users.loc[2].to_dict() == {
        "age": 56,
        "gender": "M",
        "occupation": "self-employed",
        "zip": "70072",
    }


def test_folders_may_be_given_as_text(tmp_path: Path) -> None:
    write_dat(tmp_path / "ml-1m", users=True, encoding="latin-1")
    dataset = load_dataset(
        "ml-1m", data_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), allow_download=False
    )

    assert_stream(dataset, STREAM)


def test_ml_10m_is_found_under_the_folder_name_of_its_zip(tmp_path: Path) -> None:
    write_dat(tmp_path / "ml-10M100K", users=False, encoding="utf-8")
    dataset = load_dataset("ml-10m", data_dir=tmp_path, allow_download=False)

    assert_stream(dataset, STREAM)
    assert dataset.items.loc[20, "title"] == "Misérables, Les"
    assert dataset.users is None


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest"])
def test_csv_layout(tmp_path: Path, name: str) -> None:
    write_csv(tmp_path / name)
    dataset = load_dataset(name, data_dir=tmp_path, allow_download=False)

    assert_stream(dataset, [(u, i, r - 0.5, t) for u, i, r, t in STREAM])
    items = dataset.items
    assert dataset.users is None
    assert items.index.tolist() == [10, 20, 30, 40, 50, 60]
    assert items["title"].tolist() == [
        "American President, The",
        '"Great Performances" Cats',
        "Babylon 5",
        "Fawlty Towers",
        "Millions",
        "NA",
    ]
    assert items["year"].tolist() == [1995, 1998, pd.NA, 1975, 2004, pd.NA]
    assert items.loc[10, "genres"] == ("Comedy", "Drama", "Romance")
    assert items.loc[50, "genres"] == ()


def test_ratings_already_in_time_order_keep_their_order(tmp_path: Path) -> None:
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n3,1,4,5\n1,1,2,5\n2,1,3,9\n"
    )
    (folder / "movies.csv").write_text("movieId,title,genres\n1,Heat (1995),Action\n")
    dataset = load_dataset("ml-latest-small", data_dir=tmp_path, allow_download=False)
    assert dataset.ratings["user_id"].tolist() == [3, 1, 2]


def test_a_truncated_last_line_is_dropped_with_a_warning(tmp_path: Path) -> None:
    folder = write_csv(tmp_path / "ml-latest-small")
    with (folder / "ratings.csv").open("a") as ratings:
        ratings.write("7,10")  # cut off mid-row, without its newline
    with pytest.warns(UserWarning, match=r"skipped 1 incomplete row"):
        dataset = load_dataset("ml-latest-small", data_dir=tmp_path, allow_download=False)
    assert len(dataset.ratings) == len(RATINGS)
    assert dataset.ratings.dtypes.astype(str).to_dict() == dict(RATINGS_DTYPES)


def test_a_truncated_dat_file_loses_only_its_last_line(tmp_path: Path) -> None:
    folder = write_dat(tmp_path / "ml-1m", users=True, encoding="utf-8")
    with (folder / "ratings.dat").open("a") as ratings:
        ratings.write("7::10::")
    with pytest.warns(UserWarning, match=r"ratings.dat: skipped 1 incomplete row"):
        dataset = load_dataset("ml-1m", data_dir=tmp_path, allow_download=False)
    assert len(dataset.ratings) == len(RATINGS)


def test_a_malformed_value_names_the_file(tmp_path: Path) -> None:
    folder = write_csv(tmp_path / "ml-latest-small")
    with (folder / "ratings.csv").open("a") as ratings:
        ratings.write("7,ten,4.0,300\n")
    with pytest.raises(ValueError, match="ten") as raised:
        load_dataset("ml-latest-small", data_dir=tmp_path, allow_download=False)
    assert any("ratings.csv" in note for note in raised.value.__notes__)


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown dataset 'ml-3m'.*ml-100k.*ml-latest"):
        load_dataset("ml-3m", allow_download=False)


def test_variants_registry() -> None:
    assert set(VARIANTS) == {
        "ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-32m", "ml-latest-small", "ml-latest",
    }  # fmt: skip
    for name, variant in VARIANTS.items():
        assert variant.url == f"https://files.grouplens.org/datasets/movielens/{name}.zip"
        # GroupLens updates only the "latest" zips in place; the others have pinned checksums.
        assert (variant.md5 is None) == name.startswith("ml-latest")
    assert VARIANTS["ml-10m"].folder == "ml-10M100K"


def test_dataset_rejects_a_frame_of_another_shape() -> None:
    ratings = pd.DataFrame({"user_id": [1], "item_id": [2], "rating": [4.0], "timestamp": [0]})
    with pytest.raises(ValueError, match="ratings must have columns"):
        Dataset("bad", ratings, pd.DataFrame())  # rating is float64, not float32


def test_load_from_settings(tmp_path: Path) -> None:
    write_100k(tmp_path / "data" / "ml-100k")
    settings = Settings(
        data={  # type: ignore[arg-type]  # pydantic validates a mapping into DataSettings
            "data_dir": tmp_path / "data",
            "cache_dir": tmp_path / "cache",
            "allow_download": False,
        }
    )
    assert len(load_dataset_from_settings("ml-100k", settings).ratings) == len(RATINGS)


# --- The real ml-100k ------------------------------------------------------------------------

DATA_DIR = os.environ.get("RECSYS_DATA_DIR")
real_100k = pytest.mark.skipif(
    DATA_DIR is None or not (Path(DATA_DIR) / "ml-100k" / "u.data").is_file(),
    reason="RECSYS_DATA_DIR does not hold ml-100k/",
)


@real_100k
def test_real_ml_100k(tmp_path: Path) -> None:
    assert DATA_DIR is not None
    dataset = load_dataset(
        "ml-100k", data_dir=Path(DATA_DIR), cache_dir=tmp_path, allow_download=False
    )
    ratings = dataset.ratings
    assert len(ratings) == 100_000
    assert ratings["user_id"].nunique() == 943
    assert ratings["item_id"].nunique() == 1_682
    assert ratings.dtypes.astype(str).to_dict() == dict(RATINGS_DTYPES)
    assert ratings["timestamp"].is_monotonic_increasing
    assert ratings.iloc[0].tolist() == [259, 255, 4.0, 874724710]
    # Ties keep the file's order: the stream is the file sorted stably by timestamp.
    raw = np.loadtxt(Path(DATA_DIR) / "ml-100k" / "u.data", dtype=np.int64)
    expected = raw[np.argsort(raw[:, 3], kind="stable")]
    assert np.array_equal(
        ratings[["user_id", "item_id", "timestamp"]].to_numpy(), expected[:, [0, 1, 3]]
    )

    items = dataset.items
    assert len(items) == 1_682
    assert items.loc[1].to_dict() == {
        "title": "Toy Story",
        "year": 1995,
        "genres": ("Animation", "Children's", "Comedy"),
    }
    assert items.loc[267, "title"] == "unknown"
    assert items.loc[267, "genres"] == ()
    assert items["year"].isna().sum() == 1  # item 267, which has no date at all
    assert dataset.users is not None
    assert len(dataset.users) == 943
    assert dataset.users.loc[1].to_dict() == {
        "age": 24,
        "gender": "M",
        "occupation": "technician",
        "zip": "85711",
    }


# --- Downloads, against a server on 127.0.0.1 ---------------------------------------------------


class Files(BaseHTTPRequestHandler):
    """Serves ``files`` by path; a path in ``cut_short`` announces its length but stops halfway."""

    files: ClassVar[dict[str, bytes]] = {}
    cut_short: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path in self.cut_short else body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    Files.files, Files.cut_short = {}, set()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def zip_of(folder: Path, inside: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted(folder.iterdir()):
            zipped.write(path, f"{inside}/{path.name}")
    return buffer.getvalue()


def serve_variant(
    monkeypatch: pytest.MonkeyPatch, server: str, name: str, archive: bytes, *, md5: str | None
) -> str:
    url = f"{server}/{name}.zip"
    Files.files[f"/{name}.zip"] = archive
    monkeypatch.setitem(VARIANTS, name, replace(VARIANTS[name], url=url, md5=md5))
    return url


def test_download_verifies_unpacks_and_caches(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_of(write_dat(tmp_path / "src", users=False, encoding="utf-8"), "ml-10M100K")
    md5 = hashlib.md5(archive).hexdigest()
    serve_variant(monkeypatch, server, "ml-10m", archive, md5=md5)
    cache = tmp_path / "cache"

    dataset = load_dataset("ml-10m", data_dir=tmp_path / "empty", cache_dir=cache)
    assert_stream(dataset, STREAM)
    # Only the unpacked folder remains: no archive, no partial file, no scratch folder.
    assert sorted(path.name for path in cache.iterdir()) == ["ml-10m"]

    Files.files.clear()  # the next load must not touch the network
    assert_stream(load_dataset("ml-10m", cache_dir=cache), STREAM)


def test_a_latest_variant_is_checked_against_the_published_md5(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_of(write_csv(tmp_path / "src"), "ml-latest-small")
    serve_variant(monkeypatch, server, "ml-latest-small", archive, md5=None)
    published = f"MD5 (ml-latest-small.zip) = {hashlib.md5(archive).hexdigest()}\n"
    Files.files["/ml-latest-small.zip.md5"] = published.encode()

    dataset = load_dataset("ml-latest-small", cache_dir=tmp_path / "cache")
    assert len(dataset.ratings) == len(RATINGS)


def test_a_corrupt_download_raises_and_leaves_nothing(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_of(write_100k(tmp_path / "src"), "ml-100k")
    serve_variant(monkeypatch, server, "ml-100k", archive[:-10] + b"corrupted!", md5=None)
    Files.files["/ml-100k.zip.md5"] = f"{hashlib.md5(archive).hexdigest()}  ml-100k.zip\n".encode()
    cache = tmp_path / "cache"

    with pytest.raises(DatasetChecksumError, match="not the published"):
        load_dataset("ml-100k", cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_a_transfer_cut_short_is_unavailable_and_leaves_nothing(
    tmp_path: Path, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = zip_of(write_100k(tmp_path / "src"), "ml-100k")
    serve_variant(monkeypatch, server, "ml-100k", archive, md5=hashlib.md5(archive).hexdigest())
    Files.cut_short.add("/ml-100k.zip")
    cache = tmp_path / "cache"

    with pytest.raises(DatasetUnavailableError, match="stopped after"):
        load_dataset("ml-100k", cache_dir=cache)
    assert list(cache.iterdir()) == []


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_offline_without_a_local_copy_says_what_to_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"http://127.0.0.1:{unused_port()}/ml-1m.zip"
    monkeypatch.setitem(VARIANTS, "ml-1m", replace(VARIANTS["ml-1m"], url=url))
    data_dir = tmp_path / "data"

    with pytest.raises(DatasetUnavailableError) as raised:
        load_dataset("ml-1m", data_dir=data_dir, cache_dir=tmp_path / "cache")
    message = str(raised.value)
    assert "ml-1m is not in RECSYS_DATA_DIR" in message
    assert str(data_dir) in message
    assert url in message
    assert "holds ml-1m/" in message
    assert "refused" in message.lower()


def test_a_missing_file_on_the_server_is_unavailable(tmp_path: Path, server: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        url = f"{server}/ml-20m.zip"
        patch.setitem(VARIANTS, "ml-20m", replace(VARIANTS["ml-20m"], url=url))
        with pytest.raises(DatasetUnavailableError, match="HTTP Error 404"):
            load_dataset("ml-20m", cache_dir=tmp_path / "cache")


def test_download_disabled(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError, match=r"RECSYS_DATA_DIR \(unset\).*disabled"):
        load_dataset("ml-25m", cache_dir=tmp_path, allow_download=False)
