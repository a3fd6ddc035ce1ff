"""A group's full retrain: one worker refits, every worker adopts the base at the same point of
the group's log and learns its own users' later events again in it (pure core)."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_stream.events import EventBatch
from recsys_stream.learner import ModelBase, OnlineLearner, adopt_base, relearn_since
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, StreamConfig
from recsys_stream.stream import ModelUpdate, Replica, StreamProcessor
from tests.unit.test_replica import SOURCES, exchange, learn_in_chunks, probe, records

CONFIG = LearnerConfig(
    model=ModelConfig(dim=8, context_length=4),
    retrain=RetrainConfig(every_events=None, where="inline", epochs=2, batch_size=64),
)


def worker() -> Replica:
    return Replica(StreamProcessor.create(CONFIG, StreamConfig(baselines=False), InMemorySink()))


def batch(users: list[int], items: list[int], start: int = 0) -> EventBatch:
    n = len(users)
    return EventBatch.from_arrays(users, items, [4.0] * n, list(range(start, start + n)))


def test_a_refit_for_a_group_learns_its_snapshot_and_swaps_nothing() -> None:
    learner = OnlineLearner(CONFIG)
    learner.learn(batch([1, 1, 2, 3], [10, 20, 10, 30]))
    model = learner.model
    learner.start_retrain(swap=False)
    learner.learn(batch([2], [40], start=4))  # after the snapshot: not in the refit
    base = learner.take_refit()
    assert base is not None
    assert learner.take_refit() is None, "a refit is taken once"
    assert learner.model is model, "the learner swapped it in"
    assert learner.version == 1
    assert dict(zip(base.user_ids.tolist(), base.covered.tolist(), strict=True)) == {
        1: 2,
        2: 1,
        3: 1,
    }
    assert base.events == 4
    assert base.item_ids.tolist() == [10, 20, 30]


def test_a_learner_in_a_group_starts_no_retrain_of_its_own() -> None:
    config = LearnerConfig(
        model=ModelConfig(dim=8, context_length=4),
        retrain=RetrainConfig(every_events=2, where="inline", epochs=1),
    )
    replica = Replica(StreamProcessor.create(config, StreamConfig(baselines=False), InMemorySink()))
    replica.processor.learner.learn(batch([1, 1, 2, 3], [10, 20, 10, 30]))
    assert replica.processor.learner.version == 1
    assert replica.take_base() is None


def test_a_base_survives_its_binary_form() -> None:
    learner = OnlineLearner(CONFIG)
    learner.learn(batch([1, 1, 2], [10, 20, 10]))
    learner.start_retrain(swap=False)
    base = learner.take_refit()
    assert base is not None
    again = ModelBase.from_bytes(base.to_bytes())
    assert (again.id, again.seed, again.steps) == (base.id, base.seed, base.steps)
    assert again.user_ids.tolist() == base.user_ids.tolist()
    for name, values in base.tables.items():
        np.testing.assert_array_equal(again.tables[name], values)
    for name, values in base.dense.items():
        np.testing.assert_array_equal(again.dense[name], values)


@pytest.mark.parametrize("cut", [3, 40, -5])
def test_an_unreadable_base_is_refused(cut: int) -> None:
    learner = OnlineLearner(CONFIG)
    learner.learn(batch([1, 2], [10, 20]))
    learner.start_retrain(swap=False)
    base = learner.take_refit()
    assert base is not None
    with pytest.raises(ValueError, match="model base"):
        ModelBase.from_bytes(base.to_bytes()[:cut])


def test_an_adopted_base_scores_as_the_refitted_model_did() -> None:
    leader, other = OnlineLearner(CONFIG), OnlineLearner(CONFIG)
    # The same histories, registered in another order: rows differ, ids do not.
    leader.learn(batch([1, 2, 3, 1], [10, 20, 30, 20]))
    other.learn(batch([3, 2, 1, 1], [30, 20, 10, 20]))
    leader.start_retrain(swap=False)
    base = leader.take_refit()
    assert base is not None
    adopt_base(leader, base)
    adopt_base(other, base)
    assert leader.version == other.version == 2
    assert relearn_since(leader, base, [1, 2, 3]) == 0, "the base covers every event"
    users = [1, 2, 3, 1]
    query = EventBatch.from_arrays(users, [30, 10, 20, 30], [1.0] * 4, [9] * 4)
    np.testing.assert_allclose(
        leader.predict_ratings(query), other.predict_ratings(query), atol=1e-5
    )


def test_workers_adopting_a_base_hold_one_model_again_and_relearn_each_later_event_once() -> None:
    stream = records()
    one, two = worker(), worker()
    mine = {id(one): ("p0", "p1"), id(two): ("p2", "p3")}

    def learn_to(stop: int) -> None:
        for replica in (one, two):
            for source in mine[id(replica)]:
                learn_in_chunks(replica, source, stream[source], stop)

    learn_to(100)
    exchange(one, two)
    one.start_refit()
    base = one.take_base()
    assert base is not None
    learn_to(150)
    # The group's log: two's update, learned in the old model, comes after the base.
    late = ModelUpdate.from_bytes(two.take().to_bytes())
    assert late.model_version == 1
    for replica in (one, two):
        assert replica.adopt(base)
    assert one.apply(late)
    assert one.processor.learner.version == two.processor.learner.version == 2
    # Each worker learned its own events after the snapshot again, in the base: all of them.
    after_snapshot = sum(min(len(stream[s]), 150) - min(len(stream[s]), 100) for s in SOURCES)
    assert one.events_relearned + two.events_relearned == after_snapshot
    exchange(one, two)
    total = sum(min(len(stream[s]), 150) for s in SOURCES)
    assert one.events_held == two.events_held == total
    np.testing.assert_allclose(probe(one), probe(two), atol=1e-4)
    assert not one.adopt(base), "a base read twice is adopted once"


def test_a_late_update_gives_its_log_but_not_its_model() -> None:
    stream = records()
    one, two = worker(), worker()
    learn_in_chunks(one, "p0", stream["p0"], 50)
    learn_in_chunks(two, "p2", stream["p2"], 50)
    exchange(one, two)
    one.start_refit()
    base = one.take_base()
    assert base is not None
    learn_in_chunks(two, "p2", stream["p2"], 80)
    late = two.take()
    one.adopt(base)
    weights = one.processor.learner.model.item_embedding.active().clone()
    counts = one.processor.learner.features.statistics.count
    assert one.apply(late)
    learner = one.processor.learner
    table = learner.model.item_embedding
    np.testing.assert_array_equal(table.active()[: len(weights)], weights)
    # Its new items join the catalogue with their initial rows, not the sender's learning.
    new_items = learner.features.items.ids[len(weights) :]
    assert len(new_items) > 0
    np.testing.assert_array_equal(table.active()[len(weights) :], table.initial_values(new_items))
    assert learner.features.statistics.count == counts + late.items.rating_events
    assert one.positions["p2"] == 80


def test_a_worker_started_from_anothers_checkpoint_relearns_none_of_its_users() -> None:
    stream = records()
    one = worker()
    learn_in_chunks(one, "p0", stream["p0"], 60)
    one.start_refit()
    base = one.take_base()
    assert base is not None
    learn_in_chunks(one, "p0", stream["p0"], 90)
    copy = worker()
    copy.processor.load_state_dict(one.processor.state_dict())
    copy.processor.learner.load_state_dict(one.processor.learner.state_dict())
    copy.load_state_dict(one.state_dict())
    copy.release_users()
    copy.adopt(base)
    one.adopt(base)
    # The users are still the first worker's: it alone learns their later events again.
    assert copy.events_relearned == 0
    assert one.events_relearned == 30
