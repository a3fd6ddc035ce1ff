"""ItemSharing: the item-side state of trainer workers exchanged by deltas (pure core)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys_stream.events import EventBatch
from recsys_stream.learner import ItemDelta, ItemSharing, OnlineLearner, RetrainNotShareableError
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig

CONFIG = LearnerConfig(
    model=ModelConfig(dim=8, context_length=4), retrain=RetrainConfig(every_events=None)
)


def batch(users: list[int], items: list[int], start: int = 0) -> EventBatch:
    ratings = [5.0 - (i % 4) for i in range(len(users))]
    return EventBatch.from_arrays(users, items, ratings, list(range(start, start + len(users))))


def item_state(learner: OnlineLearner, ids: list[int]) -> dict[str, np.ndarray]:
    rows = learner.features.items.lookup(ids)
    assert (rows >= 0).all()
    model, features = learner.model, learner.features
    return {
        "embedding": model.item_embedding.weight[rows].numpy(),
        "accumulator": model.item_embedding.accumulator[rows].numpy(),
        "bias": model.item_bias.weight[rows].numpy(),
        "rating_sum": features.statistics.item_sum[rows],
        "rating_count": features.statistics.item_count[rows],
        # Counts are kept against each learner's own reference time: compare decayed ones, at
        # every horizon.
        **{
            f"popularity {counts.half_life_days}": counts.decayed(counts.counts_of(ids), at=100.0)
            for counts in features.popularities
        },
        **{name: p.detach().numpy() for name, p in model.dense.state_dict().items()},
    }


def exchange(*sharings: ItemSharing) -> None:
    deltas = [sharing.take() for sharing in sharings]
    for index, sharing in enumerate(sharings):
        for other, delta in enumerate(deltas):
            if other != index:
                sharing.apply(delta)


def test_two_workers_end_an_exchange_with_the_same_item_state() -> None:
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing = ItemSharing(one), ItemSharing(two)
    one.learn(batch([1, 1, 3, 3], [10, 20, 20, 40]))
    two.learn(batch([2, 2, 4], [20, 30, 50], start=10))
    exchange(*sharing)
    ids = [10, 20, 30, 40, 50]
    for name, values in item_state(one, ids).items():
        np.testing.assert_allclose(values, item_state(two, ids)[name], atol=1e-6, err_msg=name)
    assert one.features.statistics.count == two.features.statistics.count == 7


def test_workers_years_apart_in_event_time_exchange_exactly_without_overflow() -> None:
    # A backlog read partition by partition: one worker is 3,000 days (3,000 half-lives of
    # the 1-day horizon) ahead of the other; scaling counts up by 2^3000 would overflow.
    far = 3_000 * 86_400
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing = ItemSharing(one), ItemSharing(two)
    one.learn(batch([1, 1, 3], [10, 20, 20]))
    two.learn(batch([2, 2], [20, 30], start=far))
    exchange(*sharing)
    one.learn(batch([1], [30], start=5))  # its own clock, behind the reference it now holds
    two.learn(batch([2], [40], start=far + 5))
    exchange(*sharing)
    ids = [10, 20, 30, 40]
    for learner in (one, two):
        for counts in learner.features.popularities:
            assert np.isfinite(counts.counts_of(ids)).all()
        learner.serving_state([1, 2], k=3)  # reads the priors at its last event's time
    for counts_one, counts_two in zip(
        one.features.popularities, two.features.popularities, strict=True
    ):
        at = far + 10
        np.testing.assert_allclose(
            counts_one.decayed(counts_one.counts_of(ids), at),
            counts_two.decayed(counts_two.counts_of(ids), at),
            rtol=1e-9,
            err_msg=str(counts_one.half_life_days),
        )


def test_a_worker_behind_in_event_time_reads_the_priors_at_the_groups_clock() -> None:
    # The other worker's counts hold events 200 days (half-lives of the 1-day horizon) ahead
    # of this worker's own: its priors read them at most once each, not 2^200 times.
    ahead = 200 * 86_400
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing = ItemSharing(one), ItemSharing(two)
    one.learn(batch([1], [10]))
    two.learn(batch([2], [20]))
    exchange(*sharing)
    two.learn(batch([2, 4], [20, 30], start=ahead))
    exchange(*sharing)
    one.learn(batch([1], [40], start=5))
    assert one.features.popularity.clock == ahead + 1  # two's last event
    query = batch([3], [10], start=6)
    users, items = one.features.rows(query)
    inputs = one.features.inputs(query, users, items, one.device, with_exclusions=False)
    held = np.array([1.0, 2.0, 1.0, 1.0])  # items 10, 20, 30, 40: events each
    rows = one.features.items.lookup([10, 20, 30, 40])
    prior = inputs.popularity_prior[torch.as_tensor(rows)].numpy()
    assert (prior <= np.log1p(held)[:, None] + 1e-6).all()


def test_counts_received_before_the_first_delta_are_sent_on_at_their_own_weight() -> None:
    # two's own events come 10 days (ten half-lives of the 1-day horizon) after one's, and it
    # takes one's delta in before it sends its first. Its next delta must then hold its own
    # counts only: weighing what it received on the wrong reference time, it sent back about
    # -1 per event received, and every count of the group fell below -1 (log1p: NaN priors).
    later = 10 * 86_400
    reference = OnlineLearner(CONFIG)
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing_one, sharing_two = ItemSharing(one), ItemSharing(two)
    early, late = batch([1, 3, 5], [10, 10, 20]), batch([2], [30], start=later)
    for learner, events in ((reference, early), (reference, late), (one, early), (two, late)):
        learner.learn(events)
    sharing_two.apply(sharing_one.take())
    delta = sharing_two.take()
    sharing_one.apply(delta)
    assert (delta.popularity >= 0).all()
    ids, at = [10, 20, 30], later + 100.0
    for learner in (one, two):
        for counts, expected in zip(
            learner.features.popularities, reference.features.popularities, strict=True
        ):
            np.testing.assert_allclose(
                counts.decayed(counts.counts_of(ids), at),
                expected.decayed(expected.counts_of(ids), at),
                rtol=1e-6,
                err_msg=f"horizon {counts.half_life_days} days",
            )


def test_changes_are_summed_each_counted_from_the_items_initial_row() -> None:
    reference = OnlineLearner(CONFIG)
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing = ItemSharing(one), ItemSharing(two)
    one.learn(batch([1, 1], [10, 20]))
    two.learn(batch([2, 2], [20, 30], start=5))
    changes = {}
    for learner in (one, two):
        rows = learner.features.items.lookup([20])
        initial = learner.model.item_embedding.initial_values(np.array([20]))
        changes[id(learner)] = learner.model.item_embedding.weight[rows] - initial
    exchange(*sharing)
    expected = reference.model.item_embedding.initial_values(np.array([20])) + sum(changes.values())
    torch.testing.assert_close(
        one.model.item_embedding.weight[one.features.items.lookup([20])], expected
    )


def test_a_delta_holds_only_what_changed_and_never_sends_back_what_it_received() -> None:
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing_one, sharing_two = ItemSharing(one), ItemSharing(two)
    one.learn(batch([1, 1], [10, 20]))
    sharing_two.apply(sharing_one.take())
    assert len(sharing_one.take()) == 0, "nothing learned since the last take"
    echo = sharing_two.take()
    assert len(echo) == 0
    assert echo.events == 0
    assert all(not change.any() for change in echo.dense.values())


def test_an_item_heard_of_from_another_worker_joins_the_catalogue() -> None:
    one, two = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    sharing_one, sharing_two = ItemSharing(one), ItemSharing(two)
    one.learn(batch([1, 1], [10, 77]))
    sharing_two.apply(sharing_one.take())
    assert two.features.items.lookup([77])[0] >= 0
    assert two.model.item_embedding.n_rows == len(two.features.items)
    two.learn(batch([2], [77], start=3))  # the item's row goes on learning from there
    assert two.features.statistics.item_count[two.features.items.lookup([77])[0]] == 2


def test_a_delta_survives_its_binary_form() -> None:
    learner = OnlineLearner(CONFIG)
    sharing = ItemSharing(learner)
    learner.learn(batch([1, 2, 2], [10, 20, 30]))
    delta = sharing.take()
    again = ItemDelta.from_bytes(delta.to_bytes())
    assert again.events == delta.events == 3
    assert again.popularity_reference == delta.popularity_reference
    np.testing.assert_array_equal(again.item_ids, delta.item_ids)
    np.testing.assert_array_equal(again.embedding, delta.embedding)
    assert again.dense.keys() == delta.dense.keys()
    for name, value in delta.dense.items():  # scalars among them keep their shape ()
        assert again.dense[name].shape == value.shape, name
        np.testing.assert_array_equal(again.dense[name], value)


@pytest.mark.parametrize("data", [b"", b"not a delta", b"RSDELTA\x01\x02\x00\x00\x00{}"])
def test_bytes_that_are_not_a_delta_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError, match="delta"):
        ItemDelta.from_bytes(data)


def test_a_truncated_delta_is_refused() -> None:
    learner = OnlineLearner(CONFIG)
    sharing = ItemSharing(learner)
    learner.learn(batch([1, 2], [10, 20]))
    with pytest.raises(ValueError, match="delta"):
        ItemDelta.from_bytes(sharing.take().to_bytes()[:-3])


def test_a_retrain_that_replaced_the_model_cannot_be_shared_as_a_delta() -> None:
    config = LearnerConfig(
        model=ModelConfig(dim=8, context_length=4),
        retrain=RetrainConfig(every_events=None, where="inline", epochs=1),
    )
    learner = OnlineLearner(config)
    sharing = ItemSharing(learner)
    learner.learn(batch([1, 2], [10, 20]))
    learner.start_retrain()
    assert learner.version == 2
    with pytest.raises(RetrainNotShareableError):
        sharing.take()
