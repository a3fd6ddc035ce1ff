"""Verified downloads: a file reaches its final name only once its MD5 matches.

The archive is streamed into a temporary file beside its destination, hashed on the way, and
renamed into place (an atomic step on one filesystem) only when the digest matches the published
one; on a mismatch, an incomplete transfer or any error, the temporary file is deleted, so a
corrupt or partial archive is never left where a later run would trust it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.request
from http.client import HTTPResponse
from pathlib import Path
from typing import Final

from tqdm.auto import tqdm

TIMEOUT_S: Final = 10.0
"""Seconds to wait for a connection or for the next bytes: short, so that offline fails fast."""

_CHUNK_BYTES: Final = 1 << 20
_MD5_PATTERN: Final = re.compile(r"\b[0-9a-fA-F]{32}\b")


class DatasetError(Exception):
    """A dataset could not be found, fetched or verified."""


class DatasetUnavailableError(DatasetError):
    """The dataset is on no local path and could not be downloaded (offline, or disabled)."""


class UnknownDatasetError(DatasetError, ValueError):
    """The name is no MovieLens variant (nor a synthetic stream or a ratings file)."""


class DatasetChecksumError(DatasetError):
    """A download's MD5 differs from the published one; the file was deleted."""


def fetch_published_md5(url: str) -> str:
    """Read the MD5 that a ``<file>.md5`` published beside a file holds.

    GroupLens writes either ``MD5 (ml-latest.zip) = <digest>`` or ``<digest>  ml-latest.zip``;
    the one 32-hex-digit word in the file is taken either way.
    """
    with _open(url) as response:
        text = response.read(4096).decode("ascii", errors="replace")
    match = _MD5_PATTERN.search(text)
    if match is None:
        raise DatasetChecksumError(f"{url} holds no MD5 checksum")
    return match.group().lower()


def download_verified(url: str, destination: Path, *, md5: str, description: str) -> None:
    """Download ``url`` to ``destination`` with a progress bar, keeping it only if its MD5 matches.

    Raises :class:`DatasetChecksumError` on a mismatch and :class:`OSError` (``URLError``,
    ``TimeoutError``, ``ConnectionError``, ...) when the transfer fails or stops short.
    """
    descriptor, partial_name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".part"
    )
    partial = Path(partial_name)
    try:
        digest = hashlib.md5(usedforsecurity=False)
        received = 0
        with os.fdopen(descriptor, "wb") as out, _open(url) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description
            ) as progress:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
        # ``read`` returns b"" when the server closes early, so count the bytes ourselves: a
        # short transfer is a network failure to retry, not a corrupt archive.
        if total is not None and received != total:
            raise ConnectionError(f"transfer stopped after {received:,} of {total:,} bytes")
        actual = digest.hexdigest()
        if actual != md5.lower():
            raise DatasetChecksumError(
                f"{url} has MD5 {actual}, not the published {md5.lower()}; the download was deleted"
            )
        partial.replace(destination)
    finally:
        partial.unlink(missing_ok=True)


def _open(url: str) -> HTTPResponse:
    request = urllib.request.Request(url, headers={"User-Agent": "recsys-stream"})
    response: HTTPResponse = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    return response
