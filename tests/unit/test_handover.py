"""Users handed over between trainer workers: the learner's and the evaluator's state of some
users, moved by id (pure core)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_stream.baselines.popularity import most_popular
from recsys_stream.evaluation import PrequentialEvaluator
from recsys_stream.events import EventBatch
from recsys_stream.learner import (
    ItemDelta,
    ItemSharing,
    OnlineLearner,
    UserStates,
    export_users,
    import_users,
)
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig

CONFIG = LearnerConfig(
    model=ModelConfig(dim=8, context_length=4), retrain=RetrainConfig(every_events=None)
)


def stream(n: int, seed: int, start: int = 0) -> EventBatch:
    rng = np.random.default_rng(seed)
    return EventBatch.from_arrays(
        rng.integers(1, 12, n),
        rng.integers(100, 140, n),
        rng.integers(1, 6, n).astype(float),
        np.arange(start, start + n),
    )


def trained(seed: int = 0) -> tuple[OnlineLearner, ItemDelta]:
    """A learner that learned a stream, and the delta of everything it learned of items."""
    learner = OnlineLearner(CONFIG)
    sharing = ItemSharing(learner)
    for part in stream(600, seed).split(64):
        learner.learn(part)
    return learner, sharing.take()


def with_items(delta: ItemDelta) -> OnlineLearner:
    """A fresh learner holding the item-side state of ``delta`` (as sharing leaves it)."""
    receiver = OnlineLearner(CONFIG)
    ItemSharing(receiver).apply(delta)
    return receiver


def test_a_handed_over_user_is_predicted_as_before() -> None:
    old, delta = trained()
    new = with_items(delta)
    users = [1, 2, 3, 5, 8, 11]
    import_users(new, UserStates.from_bytes(export_users(old, users).to_bytes()))
    probe = EventBatch.from_arrays(
        np.repeat(users, 4), np.tile([100, 107, 121, 139], len(users)), np.ones(24), np.arange(24)
    )
    np.testing.assert_allclose(new.predict_ratings(probe), old.predict_ratings(probe), atol=1e-5)


def test_without_the_handover_the_user_starts_from_nothing() -> None:
    """What the handover is for: the same probe differs when the users are not moved."""
    old, delta = trained()
    new = with_items(delta)
    probe = EventBatch.from_arrays([1, 2], [100, 107], [1.0, 1.0], [0, 1])
    assert not np.allclose(new.predict_ratings(probe), old.predict_ratings(probe), atol=1e-3)


def test_the_handover_replaces_what_the_receiver_held_of_the_user() -> None:
    (old, _), (new, _) = trained(seed=0), trained(seed=1)
    import_users(new, export_users(old, [4]))
    mine = export_users(new, [4])
    theirs = export_users(old, [4])
    for name in ("embedding", "residual_sum", "history_lengths", "history_items"):
        np.testing.assert_array_equal(getattr(mine, name), getattr(theirs, name), err_msg=name)
    # The receiver's other users keep their own state.
    kept, other = export_users(new, [5]), export_users(old, [5])
    assert kept.history_items.tolist() != other.history_items.tolist()


def test_unknown_users_are_left_out_and_unknown_items_join() -> None:
    old, _ = trained()
    states = export_users(old, [1, 999])
    assert states.user_ids.tolist() == [1]
    new = OnlineLearner(CONFIG)
    import_users(new, states)
    assert set(states.history_items.tolist()) <= set(new.features.items.ids.tolist())
    assert new.model.n_items == len(new.features.items)


@pytest.mark.parametrize(
    "corrupt",
    [
        pytest.param(lambda data: data[:-3], id="truncated"),
        pytest.param(lambda data: b"RSDELTA\x01" + data[8:], id="another-magic"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_unreadable_handover_bytes_are_refused(corrupt: object) -> None:
    data = export_users(trained()[0], [1, 2]).to_bytes()
    assert callable(corrupt)
    with pytest.raises(ValueError, match="user handover"):
        UserStates.from_bytes(corrupt(data))


def test_the_evaluator_hands_over_its_users_histories() -> None:
    old = PrequentialEvaluator({"popular": most_popular()}, k=3)
    for part in stream(300, seed=2).split(50):
        old.process(part)
    new = PrequentialEvaluator({"popular": most_popular()}, k=3)
    histories = old.export_users([1, 2, 3, 77])
    assert histories.user_ids.tolist() == [1, 2, 3]
    new.import_users(histories)
    again = new.export_users([1, 2, 3])
    np.testing.assert_array_equal(again.lengths, histories.lengths)
    np.testing.assert_array_equal(again.item_ids, histories.item_ids)
    assert set(histories.item_ids.tolist()) <= set(new.catalog_ids.tolist())
