"""Counts per id, optionally decayed exponentially with event time.

The learner's popularity prior, the RecentPopular and MostPopular baselines and the cold-start
lists all read how often (and how recently) each item was rated. A decayed count at time t is
``sum_k 2^(-(t - t_k)/h)``. Every id shares the factor ``2^(-t/h)`` at a given instant, so a
ranking only needs the undecayed sums of ``2^(t_k/h)``, kept relative to a reference time for
numerical range; :meth:`DecayedCounts.decayed` turns them into true decayed counts.

Decayed counts are read at the stream's clock at the earliest (the latest event time counted):
in a stream out of time order (partitions read one after another from a backlog) a read before
some counted occurrences would weigh each of them more than 1, up to ``2^(days ahead / h)``.

>>> counts = DecayedCounts()
>>> counts.add(np.array([10, 20, 20]), np.array([0.0, 1.0, 2.0]))
>>> counts.counts_of(np.array([10, 20, 99])).tolist()
[1.0, 2.0, 0.0]
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from recsys_stream._arrays.idindex import IdIndex

SECONDS_PER_DAY: Final = 86_400.0
_RESCALE_EXPONENT: Final = 512.0
"""Weights are 2^((t - t_ref) / half_life); past 2^512 the reference time moves forward."""


class DecayedCounts:
    """Per id, the number of occurrences, or its decayed version with ``half_life_days``."""

    def __init__(self, half_life_days: float | None = None) -> None:
        self.half_life_seconds = (
            None if half_life_days is None else half_life_days * SECONDS_PER_DAY
        )
        self._ids = IdIndex()
        self._counts = np.zeros(1024, dtype=np.float64)
        self._reference_time: float | None = None
        self._clock: float | None = None

    @property
    def half_life_days(self) -> float | None:
        return None if self.half_life_seconds is None else self.half_life_seconds / SECONDS_PER_DAY

    def counts_of(self, ids: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The (relative, when decayed) count of each id; 0 for ids never counted."""
        rows = self._ids.lookup(ids)
        return np.where(rows >= 0, self._counts[np.maximum(rows, 0)], 0.0)

    def decayed(self, counts: npt.NDArray[np.float64], at: float) -> npt.NDArray[np.float64]:
        """Turn :meth:`counts_of` values into decayed counts at time ``at`` (identity when
        there is no decay), each occurrence weighing at most 1: an ``at`` before the
        :attr:`clock` (a stream out of time order) is read as the clock."""
        if self.half_life_seconds is None or self._reference_time is None:
            return counts
        if self._clock is not None:
            at = max(at, self._clock)
        elapsed = at - self._reference_time
        return np.asarray(counts * 2.0 ** (-elapsed / self.half_life_seconds), dtype=np.float64)

    @property
    def clock(self) -> float | None:
        """The latest event time counted (or received with :meth:`add_counts`); None until
        the first count."""
        return self._clock

    def _advance(self, clock: float) -> None:
        if self._clock is None or clock > self._clock:
            self._clock = clock

    def weights(self, timestamps: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """What an occurrence at each of ``timestamps`` adds, on the current reference time
        (which the first call sets, and which moves forward before weights overflow)."""
        if self.half_life_seconds is None:
            return np.ones(len(timestamps))
        if self._reference_time is None:
            self._reference_time = float(timestamps[0]) if len(timestamps) else 0.0
        exponent = (timestamps - self._reference_time) / self.half_life_seconds
        if len(exponent) and exponent.max() > _RESCALE_EXPONENT:
            shift = float(exponent.max())
            self._counts *= 2.0**-shift
            self._reference_time += shift * self.half_life_seconds
            exponent = exponent - shift
        return np.exp2(exponent)

    def add(self, ids: npt.ArrayLike, timestamps: npt.NDArray[np.float64]) -> None:
        """Count one occurrence of each id at its timestamp."""
        self._add_weights(ids, self.weights(timestamps))
        if len(timestamps):
            self._advance(float(np.max(timestamps)))

    @property
    def reference_time(self) -> float | None:
        """The time the (relative) counts are kept against; None until the first count."""
        return self._reference_time

    def add_counts(
        self,
        ids: npt.ArrayLike,
        counts: npt.NDArray[np.float64],
        reference_time: float | None,
        clock: float | None,
    ) -> None:
        """Add counts kept against ``reference_time`` (another instance's, with the same half
        life) of occurrences up to ``clock`` (its :attr:`clock`): what another trainer worker
        counted, for instance."""
        counts = np.asarray(counts, dtype=np.float64)
        if clock is not None:
            self._advance(clock)
        if self.half_life_seconds is not None and reference_time is not None:
            if self._reference_time is None or reference_time > self._reference_time:
                # Move the reference forward (scaling the counts held down) rather than scale
                # later counts up: a factor above 1 overflows past 1,024 half-lives.
                self._counts *= self.conversion(self._reference_time, reference_time)
                self._reference_time = reference_time
            counts = counts * self.conversion(reference_time, self._reference_time)
        self._add_weights(ids, counts)

    def conversion(self, source: float | None, target: float | None) -> float:
        """What turns counts kept against the reference time ``source`` into counts kept
        against ``target`` (1 without decay or while either is unset). Callers keep
        ``target >= source``: the factor is then at most 1 and never overflows."""
        if self.half_life_seconds is None or source is None or target is None:
            return 1.0
        return float(2.0 ** ((source - target) / self.half_life_seconds))

    def _add_weights(self, ids: npt.ArrayLike, weights: npt.NDArray[np.float64]) -> None:
        rows = self._ids.add(ids)
        if len(self._ids) > len(self._counts):
            self._counts = np.concatenate(
                [self._counts, np.zeros(2 * len(self._ids) - len(self._counts))]
            )
        np.add.at(self._counts, rows, weights)

    def state_dict(self) -> dict[str, object]:
        return {
            "items": self._ids.state_dict(),
            "counts": self._counts[: len(self._ids)].copy(),
            "reference_time": self._reference_time,
            "clock": self._clock,
        }

    def load_state_dict(self, state: dict[str, object]) -> None:
        ids = state["items"]
        counts = state["counts"]
        assert isinstance(ids, dict)
        assert isinstance(counts, np.ndarray)
        self._ids = IdIndex.from_state_dict(ids)
        self._counts = np.concatenate([counts, np.zeros(max(1024, len(counts)))])
        reference = state["reference_time"]
        self._reference_time = None if reference is None else float(reference)  # type: ignore[arg-type]
        clock = state["clock"]
        self._clock = None if clock is None else float(clock)  # type: ignore[arg-type]
