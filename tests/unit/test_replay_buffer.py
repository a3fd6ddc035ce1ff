"""ReplayBuffer (reservoir sampling of past rows) and concatenate."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream.learner.replay_buffer import ReplayBuffer, concatenate
from recsys_stream.model import BatchInputs

SETTINGS = settings(max_examples=100, deadline=None, derandomize=True, database=None)

CONTEXT = 2
N_ITEMS = 7
ROW_FIELDS = (
    "users",
    "items",
    "ratings",
    "context_items",
    "context_residuals",
    "rating_baseline",
)


def make_batch(start: int, n: int, *, prior: float = 0.0) -> BatchInputs:
    """Rows numbered ``start .. start + n - 1``; every field is derived from the number, so
    a row's fields can be checked to have travelled together."""
    ids = torch.arange(start, start + n)
    return BatchInputs(
        users=ids,
        items=ids * 10,
        ratings=ids.float() / 2,
        context_items=torch.stack([ids + 1, ids + 2], dim=1),
        context_residuals=torch.stack([ids.float() / 4, -ids.float()], dim=1),
        rating_baseline=ids.double() + 0.5,
        popularity_prior=torch.full((N_ITEMS,), prior),
        row_groups=torch.zeros(n, dtype=torch.int64),
        n_groups=1,
        excluded_groups=torch.tensor([0, 0], dtype=torch.int64),
        excluded_items=torch.tensor([3, 4], dtype=torch.int64),
    )


def stored_ids(buffer: ReplayBuffer) -> list[int]:
    return buffer._rows["users"][: len(buffer)].tolist() if buffer._rows else []


def assert_rows_consistent(inputs: BatchInputs) -> None:
    ids = inputs.users
    assert torch.equal(inputs.items, ids * 10)
    assert torch.equal(inputs.ratings, ids.float() / 2)
    assert torch.equal(inputs.context_items, torch.stack([ids + 1, ids + 2], dim=1))
    assert torch.equal(
        inputs.context_residuals, torch.stack([ids.float() / 4, -ids.float()], dim=1)
    )
    assert torch.equal(inputs.rating_baseline, ids.double() + 0.5)


def fill(buffer: ReplayBuffer, sizes: list[int]) -> int:
    start = 0
    for size in sizes:
        buffer.add(make_batch(start, size))
        start += size
    return start


class ReferenceReservoir:
    """Algorithm R, one row at a time, consuming the same random numbers as the buffer."""

    def __init__(self, capacity: int, seed: int) -> None:
        self.capacity = capacity
        self.rng = np.random.default_rng(seed)
        self.slots: list[int] = []
        self.seen = 0

    def add(self, ids: list[int]) -> None:
        if self.capacity == 0 or not ids:
            return
        arrival = self.seen + np.arange(len(ids))
        draws = self.rng.integers(0, np.maximum(arrival + 1, 1))
        for k, row in zip(arrival.tolist(), ids, strict=True):
            if k < self.capacity:
                self.slots.append(row)
            elif draws[k - self.seen] < self.capacity:
                self.slots[draws[k - self.seen]] = row
        self.seen += len(ids)


# ------------------------------------------------------------------------------- add


def test_an_empty_buffer_has_no_rows_and_samples_none() -> None:
    buffer = ReplayBuffer(capacity=4, context_length=CONTEXT, seed=0)
    assert len(buffer) == 0
    assert buffer.sample(3, make_batch(0, 2)) is None


def test_a_zero_capacity_buffer_stays_empty() -> None:
    buffer = ReplayBuffer(capacity=0, context_length=CONTEXT)
    buffer.add(make_batch(0, 5))
    assert len(buffer) == 0
    assert buffer.sample(3, make_batch(0, 2)) is None


def test_adding_an_empty_batch_changes_nothing() -> None:
    buffer = ReplayBuffer(capacity=4, context_length=CONTEXT)
    buffer.add(make_batch(0, 0))
    assert len(buffer) == 0
    assert buffer.seen == 0


def test_the_reservoir_fills_in_arrival_order() -> None:
    buffer = ReplayBuffer(capacity=6, context_length=CONTEXT, seed=0)
    buffer.add(make_batch(0, 2))
    assert len(buffer) == 2
    buffer.add(make_batch(2, 3))
    assert len(buffer) == 5
    assert stored_ids(buffer) == [0, 1, 2, 3, 4]
    buffer.add(make_batch(5, 1))
    assert stored_ids(buffer) == [0, 1, 2, 3, 4, 5]
    assert buffer.seen == 6


def test_a_batch_that_overflows_the_reservoir_fills_it_first_then_replaces() -> None:
    buffer = ReplayBuffer(capacity=4, context_length=CONTEXT, seed=3)
    buffer.add(make_batch(0, 3))
    buffer.add(make_batch(3, 50))
    assert len(buffer) == 4
    assert buffer.seen == 53
    ids = stored_ids(buffer)
    assert len(set(ids)) == 4
    assert set(ids) <= set(range(53))
    assert ids != [0, 1, 2, 3]  # 49 chances to replace: some row was replaced


@SETTINGS
@given(
    capacity=st.integers(0, 12),
    sizes=st.lists(st.integers(0, 15), max_size=12),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_reservoir_matches_sequential_algorithm_r(
    capacity: int, sizes: list[int], seed: int
) -> None:
    buffer = ReplayBuffer(capacity=capacity, context_length=CONTEXT, seed=seed)
    reference = ReferenceReservoir(capacity, seed)
    start = 0
    for size in sizes:
        buffer.add(make_batch(start, size))
        reference.add(list(range(start, start + size)))
        start += size
        assert len(buffer) <= capacity
        assert len(buffer) == min(start, capacity)
        assert stored_ids(buffer) == reference.slots


def test_every_row_is_kept_with_equal_probability() -> None:
    capacity, sizes, trials = 5, [3, 8, 9], 800
    total = sum(sizes)
    kept = np.zeros(total)
    for seed in range(trials):
        buffer = ReplayBuffer(capacity=capacity, context_length=CONTEXT, seed=seed)
        fill(buffer, sizes)
        kept[stored_ids(buffer)] += 1
    frequency = kept / trials
    # Each of the 20 rows survives with probability 5/20; the binomial sd is about 0.015.
    np.testing.assert_allclose(frequency, capacity / total, atol=0.06)


# ---------------------------------------------------------------------------- sample


def test_sample_returns_stored_rows_with_all_their_fields() -> None:
    buffer = ReplayBuffer(capacity=8, context_length=CONTEXT, seed=1)
    fill(buffer, [5, 7, 9])
    template = make_batch(100, 3, prior=2.5)
    sample = buffer.sample(6, template)
    assert sample is not None
    assert len(sample) == 6
    assert set(sample.users.tolist()) <= set(stored_ids(buffer))
    assert_rows_consistent(sample)
    assert torch.equal(sample.popularity_prior, template.popularity_prior)
    assert sample.excluded_groups.shape == (0,)
    assert sample.excluded_items.shape == (0,)
    assert sample.excluded_groups.dtype == template.excluded_groups.dtype
    assert sample.row_groups.tolist() == list(range(6))
    assert sample.n_groups == 6


def test_sample_never_returns_more_rows_than_stored() -> None:
    buffer = ReplayBuffer(capacity=8, context_length=CONTEXT, seed=1)
    fill(buffer, [3])
    sample = buffer.sample(10, make_batch(0, 1))
    assert sample is not None
    assert len(sample) == 3
    assert set(sample.users.tolist()) <= {0, 1, 2}


def test_sample_of_zero_rows_is_none() -> None:
    buffer = ReplayBuffer(capacity=8, context_length=CONTEXT)
    fill(buffer, [3])
    assert buffer.sample(0, make_batch(0, 1)) is None


def test_samples_are_reproducible_from_the_seed() -> None:
    samples = []
    for _ in range(2):
        buffer = ReplayBuffer(capacity=5, context_length=CONTEXT, seed=42)
        fill(buffer, [4, 6, 2])
        sample = buffer.sample(4, make_batch(0, 1))
        assert sample is not None
        samples.append(sample.users.tolist())
    assert samples[0] == samples[1]


def test_sampling_does_not_change_the_stored_rows() -> None:
    buffer = ReplayBuffer(capacity=5, context_length=CONTEXT, seed=0)
    fill(buffer, [7])
    before = stored_ids(buffer)
    sample = buffer.sample(5, make_batch(0, 1))
    assert sample is not None
    sample.users.fill_(-99)  # the sample's tensors are copies
    assert stored_ids(buffer) == before


# ----------------------------------------------------------------------- persistence


def test_state_dict_round_trip_reproduces_future_samples_and_replacements() -> None:
    original = ReplayBuffer(capacity=6, context_length=CONTEXT, seed=5)
    fill(original, [4, 9, 3])
    restored = ReplayBuffer(capacity=6, context_length=CONTEXT, seed=12345)
    restored.load_state_dict(original.state_dict(), torch.device("cpu"))
    assert len(restored) == len(original)
    assert restored.seen == original.seen
    template = make_batch(0, 1)
    for start in (100, 200, 300):
        for buffer in (original, restored):
            buffer.add(make_batch(start, 5))
        first, second = original.sample(4, template), restored.sample(4, template)
        assert first is not None
        assert second is not None
        for name in ROW_FIELDS:
            assert torch.equal(getattr(first, name), getattr(second, name))
    assert stored_ids(restored) == stored_ids(original)


def test_state_dict_of_an_empty_buffer_round_trips() -> None:
    restored = ReplayBuffer(capacity=3, context_length=CONTEXT, seed=1)
    restored.load_state_dict(
        ReplayBuffer(capacity=3, context_length=CONTEXT, seed=0).state_dict(), torch.device("cpu")
    )
    assert len(restored) == 0
    assert restored.sample(2, make_batch(0, 1)) is None
    restored.add(make_batch(0, 2))
    assert stored_ids(restored) == [0, 1]


def test_state_dict_is_a_snapshot_independent_of_later_adds() -> None:
    original = ReplayBuffer(capacity=3, context_length=CONTEXT, seed=0)
    fill(original, [3])
    state = original.state_dict()
    restored = ReplayBuffer(capacity=3, context_length=CONTEXT, seed=0)
    restored.load_state_dict(state, torch.device("cpu"))
    original.add(make_batch(100, 30))  # replaces rows
    assert state["rows"]["users"].tolist() == [0, 1, 2]
    assert stored_ids(restored) == [0, 1, 2]


# ------------------------------------------------------------------------ concatenate


def test_concatenate_with_nothing_returns_the_batch_itself() -> None:
    batch = make_batch(0, 3)
    assert concatenate(batch, None) is batch


def test_concatenate_appends_the_extra_rows_and_keeps_the_batchs_exclusions() -> None:
    batch = make_batch(0, 3, prior=1.0)
    buffer = ReplayBuffer(capacity=4, context_length=CONTEXT, seed=0)
    fill(buffer, [4])
    extra = buffer.sample(2, batch)
    assert extra is not None
    combined = concatenate(batch, extra)
    assert len(combined) == 5
    assert_rows_consistent(combined)
    for name in ROW_FIELDS:
        assert torch.equal(getattr(combined, name)[:3], getattr(batch, name))
        assert torch.equal(getattr(combined, name)[3:], getattr(extra, name))
    assert torch.equal(combined.excluded_groups, batch.excluded_groups)
    assert torch.equal(combined.excluded_items, batch.excluded_items)
    assert torch.equal(combined.popularity_prior, batch.popularity_prior)
    # The replayed rows exclude nothing: each is a group of its own, after the batch's one.
    assert combined.row_groups.tolist() == [0, 0, 0, 1, 2]
    assert combined.n_groups == 3
    assert not combined.excluded(50)[3:].any()
