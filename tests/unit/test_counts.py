"""DecayedCounts: counts per id, decayed with event time, read at the stream's clock."""

from __future__ import annotations

import numpy as np

from recsys_stream._arrays import DecayedCounts

DAY = 86_400.0


def test_decayed_counts_halve_every_half_life() -> None:
    counts = DecayedCounts(half_life_days=1.0)
    counts.add(np.array([10, 10, 20]), np.array([0.0, 0.0, DAY]))
    decayed = counts.decayed(counts.counts_of(np.array([10, 20])), at=3 * DAY)
    np.testing.assert_allclose(decayed, [2 * 2.0**-3, 2.0**-2])


def test_a_read_before_the_clock_weighs_each_occurrence_at_most_one() -> None:
    # Out of time order (a backlog read partition by partition): occurrences 100 days after
    # the read time would weigh 2^100 each in a decayed count read at that time.
    counts = DecayedCounts(half_life_days=1.0)
    counts.add(np.array([10]), np.array([0.0]))
    counts.add(np.array([10, 20]), np.array([100 * DAY, 100 * DAY]))
    assert counts.clock == 100 * DAY
    early = counts.decayed(counts.counts_of(np.array([10, 20])), at=DAY)
    at_clock = counts.decayed(counts.counts_of(np.array([10, 20])), at=100 * DAY)
    np.testing.assert_allclose(early, at_clock)
    np.testing.assert_allclose(at_clock, [1 + 2.0**-100, 1.0])


def test_counts_received_from_ahead_move_the_clock_with_them() -> None:
    # Another worker's counts, kept against a reference far behind its clock: read here at
    # this worker's own (earlier) time, each occurrence still weighs at most 1.
    ahead = DecayedCounts(half_life_days=1.0)
    ahead.add(np.array([10]), np.array([0.0]))
    ahead.add(np.array([20, 20]), np.array([200 * DAY, 200 * DAY]))
    here = DecayedCounts(half_life_days=1.0)
    here.add(np.array([30]), np.array([DAY]))
    ids = np.array([10, 20])
    here.add_counts(ids, ahead.counts_of(ids), ahead.reference_time, ahead.clock)
    assert here.clock == 200 * DAY
    read = here.decayed(here.counts_of(np.array([10, 20, 30])), at=2 * DAY)
    np.testing.assert_allclose(read, [2.0**-200, 2.0, 2.0**-199])


def test_counts_survive_their_state_dict() -> None:
    counts = DecayedCounts(half_life_days=7.0)
    counts.add(np.array([1, 2, 2]), np.array([0.0, DAY, 50 * DAY]))
    copy = DecayedCounts(half_life_days=7.0)
    copy.load_state_dict(counts.state_dict())
    ids = np.array([1, 2, 3])
    assert copy.clock == counts.clock
    np.testing.assert_array_equal(
        copy.decayed(copy.counts_of(ids), at=DAY), counts.decayed(counts.counts_of(ids), at=DAY)
    )
