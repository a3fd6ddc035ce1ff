"""Random draws that depend on a key only: the same key gives the same values wherever it is drawn.

An item's initial embedding is drawn from its id, not from its position in a stream, so that two
trainer workers that meet the same new item independently give it the same initial row, and a
worker that hears of an item from another one can recreate that row without being sent it. The
draws are a counter-based generator (SplitMix64 of the seed, the key and the coordinate) turned
normal by Box-Muller, vectorised over keys and coordinates.

>>> a = keyed_normal(np.array([7, 42]), dim=3, seed=1)
>>> b = keyed_normal(np.array([42]), dim=3, seed=1)
>>> bool(np.array_equal(a[1], b[0])), a.shape, a.dtype
(True, (2, 3), dtype('float32'))
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

__all__ = ["keyed_normal"]

_GOLDEN: Final = np.uint64(0x9E3779B97F4A7C15)
_MIX_1: Final = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2: Final = np.uint64(0x94D049BB133111EB)
_TWO_POW_24: Final = float(1 << 24)


def _splitmix64(values: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    z = values + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX_1
    z = (z ^ (z >> np.uint64(27))) * _MIX_2
    result: npt.NDArray[np.uint64] = z ^ (z >> np.uint64(31))
    return result


def keyed_normal(keys: npt.ArrayLike, dim: int, seed: int) -> npt.NDArray[np.float32]:
    """A ``[len(keys), dim]`` array of standard normal draws, row ``i`` a function of
    ``(seed, keys[i])`` only."""
    key_bits = np.asarray(keys, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):  # modular arithmetic on 64 bits is the point
        streams = _splitmix64(_splitmix64(np.full(1, seed, dtype=np.uint64)) ^ key_bits)
        coordinates = np.arange(1, dim + 1, dtype=np.uint64) * _GOLDEN
        bits = _splitmix64(streams[:, None] + coordinates[None, :])
    # Two 24-bit uniforms from each 64-bit draw: (0, 1] for the radius, [0, 1) for the angle.
    radius_uniform = ((bits >> np.uint64(40)).astype(np.float64) + 1.0) / _TWO_POW_24
    angle_uniform = (bits & np.uint64(0xFFFFFF)).astype(np.float64) / _TWO_POW_24
    normal = np.sqrt(-2.0 * np.log(radius_uniform)) * np.cos(2.0 * np.pi * angle_uniform)
    return normal.astype(np.float32)
