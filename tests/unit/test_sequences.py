"""UserSequences against a dict-of-lists reference."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream._arrays.sequences import PAD, UserSequences, Window

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)

Event = tuple[int, int, float]
Reference = dict[int, list[tuple[int, float]]]


def window_of(events: list[tuple[int, float]], n: int) -> tuple[list[int], list[float]]:
    """The last n events, oldest first, left-padded with (PAD, 0.0)."""
    last = events[-n:] if n else []
    padding = n - len(last)
    return [PAD] * padding + [item for item, _ in last], [0.0] * padding + [v for _, v in last]


def assert_window(window: Window, expected: list[tuple[list[int], list[float]]], n: int) -> None:
    assert window.items.shape == (len(expected), n)
    assert window.values.shape == (len(expected), n)
    assert window.items.dtype == np.int64
    assert window.values.dtype == np.float32
    assert window.items.tolist() == [items for items, _ in expected]
    assert window.values.tolist() == [values for _, values in expected]
    assert np.array_equal(window.mask, window.items >= 0)


def build(batches: list[list[tuple[int, int, float]]], initial_pool: int = 4) -> UserSequences:
    seqs = UserSequences(initial_pool=initial_pool)
    for batch in batches:
        users, items, values = (np.array(column) for column in zip(*batch, strict=True))
        seqs.append(users, items, values)
    return seqs


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds``."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------- hand examples


def test_append_returns_each_events_position_in_its_users_sequence() -> None:
    seqs = UserSequences(initial_pool=8)
    assert seqs.append(np.array([0, 1, 0]), np.array([10, 11, 12])).tolist() == [0, 0, 1]
    assert seqs.append(np.array([1, 0, 1, 3]), np.array([13, 14, 15, 16])).tolist() == [
        1,
        2,
        2,
        0,
    ]
    assert seqs.n_users == 4
    assert seqs.n_events == 7
    assert seqs.lengths(np.array([0, 1, 2, 3])).tolist() == [3, 3, 0, 1]


def test_append_of_an_empty_batch_changes_nothing() -> None:
    seqs = UserSequences()
    assert seqs.append(np.zeros(0, np.int64), np.zeros(0, np.int64)).tolist() == []
    assert seqs.n_users == 0
    assert seqs.n_events == 0


def test_lengths_of_unknown_users_are_zero() -> None:
    seqs = UserSequences()
    assert seqs.lengths(np.array([0, 5])).tolist() == [0, 0]
    seqs.append(np.array([1]), np.array([3]))
    assert seqs.lengths(np.array([0, 1, 2, 1000])).tolist() == [0, 1, 0, 0]


def test_gather_returns_the_items_between_start_and_stop() -> None:
    seqs = UserSequences(initial_pool=4)
    seqs.append(np.array([0, 0, 0, 0, 1, 1]), np.array([10, 11, 12, 13, 20, 21]))
    rows, items = seqs.gather(
        np.array([0, 1, 0, 7]), np.array([1, 0, 3, 0]), np.array([3, 9, 3, 4])
    )
    assert rows.tolist() == [0, 0, 1, 1]
    assert items.tolist() == [11, 12, 20, 21]


def test_last_n_is_left_padded_oldest_first() -> None:
    seqs = UserSequences()
    seqs.append(np.array([0, 1, 0]), np.array([10, 11, 12]), np.array([4.0, 3.0, 5.0]))
    window = seqs.last_n(np.array([0, 2, 1]), 3)
    assert window.items.tolist() == [[-1, 10, 12], [-1, -1, -1], [-1, -1, 11]]
    assert window.values.tolist() == [[0.0, 4.0, 5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 3.0]]
    assert window.mask.tolist() == [[False, True, True], [False] * 3, [False, False, True]]


def test_last_n_keeps_only_the_most_recent_events() -> None:
    seqs = UserSequences()
    seqs.append(np.zeros(5, np.int64), np.arange(5) + 10, np.arange(5, dtype=float))
    window = seqs.last_n(np.array([0]), 2)
    assert window.items.tolist() == [[13, 14]]
    assert window.values.tolist() == [[3.0, 4.0]]


def test_last_n_with_pending_sees_only_earlier_pending_rows_of_the_same_user() -> None:
    seqs = UserSequences()
    seqs.append(np.array([0, 1]), np.array([100, 200]), np.array([1.0, 2.0]))
    users = np.array([0, 1, 0, 2, 0])
    pending = np.array([101, 201, 102, 300, 103])
    pending_values = np.array([1.5, 2.5, 3.5, 4.5, 5.5])
    window = seqs.last_n(users, 3, pending_items=pending, pending_values=pending_values)
    assert window.items.tolist() == [
        [-1, -1, 100],  # user 0, first in the batch: only the stored event
        [-1, -1, 200],
        [-1, 100, 101],  # sees row 0, not itself
        [-1, -1, -1],  # a new user: nothing before it
        [100, 101, 102],  # sees rows 0 and 2, not itself (103)
    ]
    assert window.values.tolist() == [
        [0.0, 0.0, 1.0],
        [0.0, 0.0, 2.0],
        [0.0, 1.0, 1.5],
        [0.0, 0.0, 0.0],
        [1.0, 1.5, 3.5],
    ]


def test_last_n_with_pending_items_but_no_values_gives_pending_events_value_zero() -> None:
    seqs = UserSequences()
    seqs.append(np.array([0]), np.array([100]), np.array([4.0]))
    window = seqs.last_n(np.array([0, 0]), 2, pending_items=np.array([101, 102]))
    assert window.items.tolist() == [[-1, 100], [100, 101]]
    assert window.values.tolist() == [[0.0, 4.0], [4.0, 0.0]]


def test_last_n_with_end_only_sees_events_before_end() -> None:
    seqs = UserSequences()
    seqs.append(np.zeros(5, np.int64), np.arange(5) + 10, np.arange(5, dtype=float))
    window = seqs.last_n(np.array([0, 0, 0]), 2, end=np.array([0, 1, 4]))
    assert window.items.tolist() == [[-1, -1], [-1, 10], [12, 13]]
    assert window.values.tolist() == [[0.0, 0.0], [0.0, 0.0], [2.0, 3.0]]


def test_last_n_of_zero_events_is_an_empty_window() -> None:
    seqs = UserSequences()
    seqs.append(np.array([0]), np.array([1]))
    window = seqs.last_n(np.array([0, 3]), 0)
    assert window.items.shape == (2, 0)
    assert window.values.shape == (2, 0)


def test_last_n_excluding_leaves_out_the_excluded_position() -> None:
    seqs = UserSequences()
    seqs.append(np.zeros(5, np.int64), np.arange(5) + 10, np.arange(5, dtype=float))
    users = np.zeros(4, np.int64)
    window = seqs.last_n_excluding(users, np.array([4, 3, 2, 0]), 2)
    assert window.items.tolist() == [
        [12, 13],  # the newest excluded: the two before it
        [12, 14],
        [13, 14],  # the excluded event is just outside the window
        [13, 14],  # the excluded event is much older than the window
    ]
    assert window.values.tolist() == [[2.0, 3.0], [2.0, 4.0], [3.0, 4.0], [3.0, 4.0]]


def test_last_n_excluding_pads_short_sequences() -> None:
    seqs = UserSequences()
    seqs.append(np.array([0, 0, 1]), np.array([10, 11, 20]), np.array([1.0, 2.0, 3.0]))
    window = seqs.last_n_excluding(np.array([0, 0, 1, 5]), np.array([0, 1, 0, 0]), 3)
    assert window.items.tolist() == [[-1, -1, 11], [-1, -1, 10], [-1, -1, -1], [-1, -1, -1]]
    assert window.values.tolist() == [
        [0.0, 0.0, 2.0],
        [0.0, 0.0, 1.0],
        [0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0],
    ]


def test_value_at_reads_the_stored_value_of_an_event() -> None:
    seqs = UserSequences(initial_pool=2)
    seqs.append(np.array([0, 1, 0, 1, 0]), np.arange(5), np.array([0.5, 1.5, 2.5, 3.5, 4.5]))
    values = seqs.value_at(np.array([0, 0, 0, 1, 1]), np.array([0, 1, 2, 0, 1]))
    assert values.tolist() == [0.5, 2.5, 4.5, 1.5, 3.5]


def test_append_without_values_stores_value_zero() -> None:
    seqs = UserSequences(initial_pool=2)
    seqs.append(np.array([0, 0]), np.array([1, 2]), np.array([5.0, 5.0]))
    seqs.append(np.array([0, 1]), np.array([3, 4]))
    assert seqs.value_at(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 0])).tolist() == [
        5.0,
        5.0,
        0.0,
        0.0,
    ]


def test_a_new_user_with_a_large_row_creates_empty_users_below_it() -> None:
    seqs = UserSequences(initial_pool=4)
    seqs.append(np.array([2, 500]), np.array([1, 2]))
    assert seqs.n_users == 501
    assert seqs.lengths(np.array([0, 2, 499, 500, 501])).tolist() == [0, 1, 0, 1, 0]
    assert seqs.last_n(np.array([500, 3]), 2).items.tolist() == [[-1, 2], [-1, -1]]


def test_many_appends_to_a_tiny_pool_keep_every_sequence_intact() -> None:
    rng = np.random.default_rng(0)
    seqs = UserSequences(initial_pool=1)
    reference: dict[int, list[int]] = {}
    for _ in range(200):
        users = rng.integers(0, 30, size=rng.integers(1, 20))
        items = rng.integers(0, 10_000, size=len(users))
        seqs.append(users, items)
        for user, item in zip(users.tolist(), items.tolist(), strict=True):
            reference.setdefault(user, []).append(item)
    everyone = np.arange(30)
    rows, items = seqs.gather(everyone, np.zeros(30, np.int64), np.full(30, 10**6))
    got: dict[int, list[int]] = {}
    for row, item in zip(rows.tolist(), items.tolist(), strict=True):
        got.setdefault(row, []).append(item)
    assert got == reference
    # Abandoned segments are reclaimed: the pool stays within a small multiple of the data.
    assert len(seqs._items) <= 8 * max(seqs.n_events, int(seqs._capacity.sum()))


def test_state_dict_round_trip_keeps_sequences_values_and_trailing_empty_users() -> None:
    seqs = UserSequences(initial_pool=4)
    seqs.append(np.array([0, 3, 0]), np.array([10, 30, 11]), np.array([1.0, 3.0, 2.0]))
    seqs._ensure_users(6)  # users registered without events, e.g. by a later lookup
    state = seqs.state_dict()
    assert state["lengths"].tolist() == [2, 0, 0, 1, 0, 0]
    assert state["items"].tolist() == [10, 11, 30]
    assert state["values"].tolist() == [1.0, 2.0, 3.0]
    restored = UserSequences.from_state_dict(state)
    assert restored.n_users == 6
    assert restored.n_events == 3
    empty = ([-1, -1], [0.0, 0.0])
    assert_window(
        restored.last_n(np.arange(6), 2),
        [([10, 11], [1.0, 2.0]), empty, empty, ([-1, 30], [0.0, 3.0]), empty, empty],
        2,
    )


def test_state_dict_of_an_empty_store_round_trips() -> None:
    restored = UserSequences.from_state_dict(UserSequences().state_dict())
    assert restored.n_users == 0
    assert restored.n_events == 0


def test_state_dict_is_a_snapshot() -> None:
    seqs = UserSequences(initial_pool=64)
    seqs.append(np.array([0]), np.array([1]), np.array([2.0]))
    state = seqs.state_dict()
    seqs.append(np.array([0]), np.array([5]), np.array([6.0]))
    assert state["items"].tolist() == [1]
    assert state["lengths"].tolist() == [1]


def test_an_empty_initial_pool_grows_on_first_append() -> None:
    seqs = UserSequences(initial_pool=0)
    with time_limit(0.5):
        seqs.append(np.array([0]), np.array([7]))
    assert seqs.lengths(np.array([0])).tolist() == [1]


# --------------------------------------------------------------------- property test

events_strategy = st.tuples(
    st.one_of(st.integers(0, 6), st.integers(0, 300)),  # mostly few users, sometimes far rows
    st.integers(0, 2**20),
    st.integers(0, 20).map(lambda half: half / 2),  # exact in float32
)
batches_strategy = st.lists(
    st.tuples(st.lists(events_strategy, min_size=1, max_size=25), st.booleans()),
    min_size=1,
    max_size=10,
)


def check_against_reference(
    seqs: UserSequences, reference: Reference, rng: np.random.Generator
) -> None:
    n_users = seqs.n_users
    assert n_users == (max(reference) + 1 if reference else 0)
    assert seqs.n_events == sum(len(events) for events in reference.values())
    probe = np.arange(n_users + 3)
    assert seqs.lengths(probe).tolist() == [len(reference.get(u, [])) for u in probe.tolist()]

    users = rng.integers(0, n_users + 3, size=12)
    lengths = [len(reference.get(u, [])) for u in users.tolist()]

    # gather with start/stop (stop may run past the end, start may exceed stop)
    starts = np.array([rng.integers(0, length + 2) for length in lengths])
    stops = np.array([rng.integers(0, length + 3) for length in lengths])
    rows, items = seqs.gather(users, starts, stops)
    expected_rows, expected_items = [], []
    for j, user in enumerate(users.tolist()):
        chunk = reference.get(user, [])[starts[j] : stops[j]]
        expected_rows += [j] * len(chunk)
        expected_items += [item for item, _ in chunk]
    assert rows.tolist() == expected_rows
    assert items.tolist() == expected_items

    for n in (0, 1, 3, 7):
        assert_window(
            seqs.last_n(users, n),
            [window_of(reference.get(u, []), n) for u in users.tolist()],
            n,
        )
        ends = np.array([rng.integers(0, length + 1) for length in lengths])
        assert_window(
            seqs.last_n(users, n, end=ends),
            [window_of(reference.get(u, [])[:e], n) for u, e in zip(users, ends, strict=True)],
            n,
        )
        excluded = np.array([rng.integers(0, length + 1) for length in lengths])
        expected = []
        for u, e in zip(users.tolist(), excluded.tolist(), strict=True):
            events = reference.get(u, [])
            expected.append(window_of(events[:e] + events[e + 1 :], n))
        assert_window(seqs.last_n_excluding(users, excluded, n), expected, n)

    known = [j for j, length in enumerate(lengths) if length]
    if known:
        positions = np.array([rng.integers(0, lengths[j]) for j in known])
        values = seqs.value_at(users[known], positions)
        assert values.tolist() == [
            reference[u][p][1] for u, p in zip(users[known].tolist(), positions, strict=True)
        ]


@SETTINGS
@given(
    batches=batches_strategy,
    initial_pool=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_sequences_match_a_dict_of_lists_reference(
    batches: list[tuple[list[Event], bool]], initial_pool: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    seqs = UserSequences(initial_pool=initial_pool)
    reference: Reference = {}
    for batch, with_values in batches:
        users = np.array([u for u, _, _ in batch], dtype=np.int64)
        items = np.array([i for _, i, _ in batch], dtype=np.int64)
        values = np.array([v for _, _, v in batch])

        # Before appending: the batch as pending rows, in stream order.
        for n in (1, 4):
            window = seqs.last_n(users, n, pending_items=items, pending_values=values)
            expected = []
            for j, user in enumerate(users.tolist()):
                earlier = [(i, v) for u, i, v in batch[:j] if u == user]
                expected.append(window_of(reference.get(user, []) + earlier, n))
            assert_window(window, expected, n)

        positions = seqs.append(users, items, values if with_values else None)
        expected_positions = []
        for user, item, value in batch:
            events = reference.setdefault(user, [])
            expected_positions.append(len(events))
            events.append((item, value if with_values else 0.0))
        assert positions.tolist() == expected_positions
        check_against_reference(seqs, reference, rng)

    restored = UserSequences.from_state_dict(seqs.state_dict())
    check_against_reference(restored, reference, np.random.default_rng(seed))
    # Both continue the same way.
    more_users, more_items = np.array([0, 0, 301]), np.array([1, 2, 3])
    assert np.array_equal(
        restored.append(more_users, more_items), seqs.append(more_users, more_items)
    )
    assert np.array_equal(restored.state_dict()["items"], seqs.state_dict()["items"])
