"""Replica: workers that learn a stream split by user and keep one model by exchanging
updates; each event's learning in every replica once, however sources move (pure core)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recsys_stream.events import EventBatch, RatingEvent, encode
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, StreamConfig
from recsys_stream.stream import (
    ModelUpdate,
    Replica,
    StreamProcessor,
    parse_checkpoint,
    restore_processor,
)
from recsys_stream.stream.checkpoint import checkpoint_bytes

CONFIG = LearnerConfig(
    model=ModelConfig(dim=8, context_length=4), retrain=RetrainConfig(every_events=None)
)
SOURCES = ("p0", "p1", "p2", "p3")


def worker() -> Replica:
    return Replica(StreamProcessor.create(CONFIG, StreamConfig(baselines=False), InMemorySink()))


def records(n: int = 800, seed: int = 0) -> dict[str, list[bytes | None]]:
    """A stream split into sources by user (user % 4), each source in time order."""
    rng = np.random.default_rng(seed)
    users, items = rng.integers(1, 40, n), rng.integers(100, 160, n)
    ratings = rng.integers(1, 6, n).astype(float)
    split: dict[str, list[bytes | None]] = {source: [] for source in SOURCES}
    for t in range(n):
        event = RatingEvent(int(users[t]), int(items[t]), float(ratings[t]), t)
        split[SOURCES[users[t] % 4]].append(encode(event))
    return split


def exchange(*replicas: Replica) -> None:
    updates = [replica.take().to_bytes() for replica in replicas]
    for replica in replicas:
        for data in updates:
            replica.apply(ModelUpdate.from_bytes(data))


def learn_in_chunks(replica: Replica, source: str, stream: list[bytes | None], stop: int) -> None:
    at = replica.position(source)
    while at < stop:
        end = min(stop, at + 50)
        replica.learn(stream[at:end], source, at)
        at = end


def probe(replica: Replica) -> np.ndarray:
    users = np.repeat(np.arange(1, 40), 3)
    items = np.tile([100, 131, 159], 39)
    batch = EventBatch.from_arrays(users, items, np.ones(len(users)), np.arange(len(users)))
    return replica.processor.learner.predict_ratings(batch)


def test_two_workers_exchanging_updates_hold_one_model() -> None:
    stream = records()
    one, two = worker(), worker()
    for stop in range(50, 250, 50):
        for source in ("p0", "p1"):
            learn_in_chunks(one, source, stream[source], stop)
        for source in ("p2", "p3"):
            learn_in_chunks(two, source, stream[source], stop)
        exchange(one, two)
    total = sum(min(len(stream[s]), 200) for s in SOURCES)
    assert one.events_held == two.events_held == total
    assert one.positions == two.positions
    np.testing.assert_allclose(probe(one), probe(two), atol=1e-4)


def test_a_source_taken_over_is_learned_once() -> None:
    """The old owner learned past its last update, then stopped (a crash): the new owner
    applies what was published and learns the rest, so every event is held exactly once."""
    stream = records()
    old, new = worker(), worker()
    learn_in_chunks(old, "p0", stream["p0"], 100)
    published = old.take().to_bytes()
    learn_in_chunks(old, "p0", stream["p0"], 150)  # lost with the crash
    new.apply(ModelUpdate.from_bytes(published))
    assert new.position("p0") == 100
    learn_in_chunks(new, "p0", stream["p0"], len(stream["p0"]))
    assert new.events_held == len(stream["p0"])
    assert new.processor.learner.events_learned == len(stream["p0"]) - 100


def test_a_worker_restored_from_its_checkpoint_applies_only_what_came_after() -> None:
    stream = records()
    first, other = worker(), worker()
    learn_in_chunks(first, "p0", stream["p0"], 60)
    log = [first.take().to_bytes()]
    saved = checkpoint_bytes(first.processor, {}, {"replica": first.state_dict()})
    learn_in_chunks(first, "p0", stream["p0"], 120)
    log.append(first.take().to_bytes())  # published, then the worker crashed
    learn_in_chunks(other, "p1", stream["p1"], 80)
    log.append(other.take().to_bytes())

    restored = worker()
    state = parse_checkpoint(saved)
    restore_processor(restored.processor, state)
    restored.load_state_dict(state["extra"]["replica"])
    applied = [restored.apply(ModelUpdate.from_bytes(data)) for data in log]
    assert applied == [False, True, True]  # the first is in the checkpoint already
    assert restored.events_held == 120 + 80
    assert restored.position("p0") == 120
    assert restored.origin != first.origin


def test_a_worker_does_not_send_the_users_of_a_source_it_handed_over() -> None:
    """Its replay buffer still holds their old events and changes its copy of them; the
    state of those users is their new owner's to send."""
    stream = records()
    old, new = worker(), worker()
    learn_in_chunks(old, "p0", stream["p0"], 100)
    new.apply(old.take())
    learn_in_chunks(new, "p0", stream["p0"], 150)
    old.apply(new.take())
    learn_in_chunks(old, "p1", stream["p1"], 100)  # replays events of p0's users too
    sent = set(old.take().users.user_ids.tolist())
    moved = {user for user in range(1, 40) if user % 4 == 0}
    assert sent
    assert not sent & moved


def test_an_update_applied_twice_counts_once() -> None:
    stream = records()
    one, two = worker(), worker()
    learn_in_chunks(one, "p0", stream["p0"], 40)
    update = one.take()
    assert two.apply(update) is True
    assert two.apply(update) is False
    assert one.apply(update) is False  # its own
    assert two.events_held == 40


def test_records_below_the_position_are_skipped() -> None:
    stream = records()
    replica = worker()
    assert replica.learn(stream["p0"][:30], "p0", 0) == 30
    assert replica.learn(stream["p0"][:40], "p0", 0) == 10
    assert replica.events_held == 40


@pytest.mark.parametrize("cut", [1, 20, 500])
def test_an_unreadable_update_is_refused(cut: int) -> None:
    replica = worker()
    replica.learn(records()["p0"][:20], "p0", 0)
    data = replica.take().to_bytes()
    with pytest.raises(ValueError, match="update"):
        ModelUpdate.from_bytes(data[:-cut])


def test_an_update_holding_values_that_are_not_finite_is_refused() -> None:
    replica = worker()
    replica.learn(records()["p0"][:20], "p0", 0)
    update = replica.take()
    embedding = update.items.embedding.copy()
    embedding[0, 0] = np.nan
    poisoned = dataclasses.replace(
        update, items=dataclasses.replace(update.items, embedding=embedding)
    )
    ModelUpdate.from_bytes(update.to_bytes())  # the same update, finite, is readable
    refused = "item delta: 'embedding' holds values that are not finite"
    with pytest.raises(ValueError, match=refused):
        ModelUpdate.from_bytes(poisoned.to_bytes())


def test_every_replica_reports_the_whole_streams_prequential_figures() -> None:
    stream = records()
    one, two = worker(), worker()
    for source in SOURCES[:2]:
        learn_in_chunks(one, source, stream[source], len(stream[source]))
    for source in SOURCES[2:]:
        learn_in_chunks(two, source, stream[source], len(stream[source]))
    own = {
        name: replica.processor.evaluator.ranking_log("learner").ranks.copy()
        for name, replica in (("one", one), ("two", two))
    }
    exchange(one, two)
    total = sum(len(events) for events in stream.values())
    for replica in (one, two):
        report = replica.processor.evaluator.report()
        assert report.events == total
        ranks = replica.processor.evaluator.ranking_log("learner").ranks
        # Each worker's ranks once: its own, then the other's (none sent back).
        assert sorted(ranks.tolist()) == sorted(np.concatenate(list(own.values())).tolist())
        rating = report.models["learner"].rating
        assert rating is not None
        confusion = rating.confusion
        assert confusion.tp + confusion.fp + confusion.fn + confusion.tn == total
    # An update with nothing new evaluated adds nothing.
    exchange(one, two)
    assert one.processor.evaluator.events_seen == total


def test_evaluated_rows_survive_the_binary_form() -> None:
    stream = records(200)
    one = worker()
    learn_in_chunks(one, "p0", stream["p0"], len(stream["p0"]))
    update = one.take()
    again = ModelUpdate.from_bytes(update.to_bytes())
    assert again.evaluation.events == update.evaluation.events == len(stream["p0"])
    assert again.evaluation.ranks["learner"].tolist() == update.evaluation.ranks["learner"].tolist()
    np.testing.assert_array_equal(again.evaluation.ranked_at, update.evaluation.ranked_at)
    np.testing.assert_array_equal(
        again.evaluation.predicted["learner"], update.evaluation.predicted["learner"]
    )
