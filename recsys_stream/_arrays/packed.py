"""A compact binary form for a few named arrays and a JSON header, for state that crosses
processes (trainer workers exchanging deltas and handing users over).

``magic``, the length of the header (4 bytes, little-endian), the header (JSON: the caller's
scalars, and each array's name, dtype and shape), then the arrays' bytes in order: no pickle, so
bytes from another process can be read without trusting them, and no archive format, so packing
costs about one copy. Floating-point arrays must hold finite values only: this is state that
crosses processes, and a non-finite value would spread wherever it is added.

>>> data = pack(b"DEMO\\x01", {"answer": 42}, {"ids": np.array([3, 1, 2])})
>>> header, arrays = unpack(data, b"DEMO\\x01", "a demo")
>>> header["answer"], arrays["ids"].tolist()
(42, [3, 1, 2])
>>> unpack(data[:-1], b"DEMO\\x01", "a demo")
Traceback (most recent call last):
...
ValueError: an unreadable a demo: buffer is smaller than requested size
>>> unpack(pack(b"DEMO\\x01", {}, {"rows": np.array([1.0, np.nan])}), b"DEMO\\x01", "a demo")
Traceback (most recent call last):
...
ValueError: an unreadable a demo: 'rows' holds values that are not finite
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = ["pack", "unpack"]


def pack(magic: bytes, header: Mapping[str, Any], arrays: Mapping[str, npt.ArrayLike]) -> bytes:
    """``header`` (JSON-serialisable scalars) and ``arrays`` in one byte string."""
    contiguous = {name: np.asarray(value, order="C") for name, value in arrays.items()}
    described = orjson.dumps(
        {
            **header,
            "arrays": [
                [name, value.dtype.str, list(value.shape)] for name, value in contiguous.items()
            ],
        }
    )
    return b"".join(
        [magic, len(described).to_bytes(4, "little"), described]
        + [value.tobytes() for value in contiguous.values()]
    )


def unpack(
    data: bytes, magic: bytes, what: str
) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The header and arrays of :func:`pack`; ``ValueError`` naming ``what`` for bytes that
    are not one (another magic, truncated, or malformed)."""
    if not data.startswith(magic) or len(data) < len(magic) + 4:
        raise ValueError(f"not {what}")
    try:
        return _parse(data, len(magic))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"an unreadable {what}: {exc}") from exc


def _parse(data: bytes, at: int) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    length = int.from_bytes(data[at : at + 4], "little")
    at += 4
    header = orjson.loads(data[at : at + length])
    at += length
    arrays: dict[str, npt.NDArray[Any]] = {}
    for name, dtype, shape in header.pop("arrays"):
        count = int(np.prod(shape))
        value = np.frombuffer(data, dtype=np.dtype(dtype), count=count, offset=at)
        if value.dtype.kind in "fc" and not np.isfinite(value).all():
            # Learned and counted state is finite; a NaN taken in would spread to every row
            # it touches, and on through every worker that shares them.
            raise ValueError(f"{name!r} holds values that are not finite")
        arrays[name] = value.reshape(shape).copy()
        at += value.nbytes
    if at != len(data):
        raise ValueError("the wrong length")
    return header, arrays
