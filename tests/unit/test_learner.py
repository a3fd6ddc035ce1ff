"""The online learner: learning, scoring without leakage, fold-in, retrains and checkpoints."""

from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys_stream._arrays.retrieval import candidate_mask
from recsys_stream.base import RankingQuery
from recsys_stream.baselines.popularity import most_popular, recent_popular
from recsys_stream.data import generate_synthetic
from recsys_stream.evaluation.prequential import PrequentialEvaluator
from recsys_stream.events import EventBatch
from recsys_stream.learner import retrain as retrain_module
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.online import OnlineLearner
from recsys_stream.learner.retrain_process import CatchUp, ProcessRetrain
from recsys_stream.model import ContextualNeuMF
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, StreamConfig
from recsys_stream.stream import CheckpointError, SimulationConfig, load_checkpoint, run_simulation

SMALL = ModelConfig(dim=16, context_length=8, mlp_hidden=16, sampled_negatives=64)
NO_RETRAIN = RetrainConfig(every_events=None)


def _learner(**overrides: object) -> OnlineLearner:
    config = LearnerConfig(model=SMALL, retrain=NO_RETRAIN, device="cpu")
    return OnlineLearner(dataclasses.replace(config, **overrides))  # type: ignore[arg-type]


def _stream(n: int = 4000, seed: int = 3):
    return generate_synthetic(n, n_users=60, n_items=120, seed=seed)


def _served(learner: OnlineLearner, user: int, k: int) -> list[tuple[int, float]]:
    """``user``'s list as serving computes it: their state against the model snapshot."""
    _, _, [state] = learner.serving_state([user], k)
    known = bool(np.isin(user, learner.features.users.ids))
    return learner.snapshot().recommend(state if known else None, k)


def _query(learner: OnlineLearner, batch: EventBatch) -> RankingQuery:
    catalog = np.unique(np.concatenate([learner.features.items.ids, batch.item_ids]))
    rows = np.arange(len(batch))
    mask = candidate_mask(len(catalog), np.full(len(batch), len(catalog)), rows[:0], rows[:0])
    columns = np.searchsorted(catalog, batch.item_ids)
    seen = np.full(len(batch), len(catalog))
    return RankingQuery(batch, rows, catalog, columns, mask, seen, rows[:0], rows[:0])


def test_the_learner_beats_popularity_on_a_structured_stream() -> None:
    learner = _learner()
    evaluator = PrequentialEvaluator(
        {"learner": learner, "most_popular": most_popular(), "recent_popular": recent_popular()}
    )
    for batch in EventBatch.from_ratings(_stream().ratings).split(200):
        evaluator.process(batch)
    figures = evaluator.report().models
    assert figures["learner"].overall.hr > figures["most_popular"].overall.hr
    assert figures["learner"].overall.hr > 1.3 * figures["recent_popular"].overall.hr
    assert figures["learner"].rating is not None
    assert figures["learner"].rating.rmse < 1.0
    assert learner.events_learned == 4000


def _model_state(learner: OnlineLearner) -> dict[str, torch.Tensor]:
    model = learner.model
    tables = {"item": model.item_embedding, "bias": model.item_bias, "user": model.user_embedding}
    state = {f"{name}/weight": table.active().clone() for name, table in tables.items()}
    state |= {
        f"{name}/accumulator": table.accumulator[: table.n_rows].clone()
        for name, table in tables.items()
    }
    state |= {f"dense/{name}": value.clone() for name, value in model.dense.state_dict().items()}
    state |= {f"adam/{i}": value.clone() for i, value in enumerate(model.optimizer.second)}
    return state


def _unchanged(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    """Every value as before (rows of users and items met since: new rows, not changes)."""
    return all(
        torch.allclose(
            value, after[name][: len(value)] if value.ndim else after[name], 0, 0, equal_nan=True
        )
        for name, value in before.items()
    )


def test_a_step_whose_loss_is_not_finite_changes_nothing() -> None:
    learner = _learner()
    batches = list(EventBatch.from_ratings(_stream(1200).ratings).split(400))
    learner.learn(batches[0])
    learner.learn(batches[1])
    model, features = learner.model, learner.features
    users = np.arange(min(50, len(features.users)))
    inputs = features.training_inputs(users, np.zeros(len(users), dtype=np.int64), model.device)
    poisoned = dataclasses.replace(
        inputs, rating_baseline=inputs.rating_baseline.clone().fill_(float("nan"))
    )
    before, steps = _model_state(learner), model.steps

    losses = model.learn(poisoned)

    assert not losses.applied
    assert _unchanged(before, _model_state(learner))
    assert model.steps == steps
    assert model.learn(inputs).applied  # the tables forgot the skipped step's rows
    assert not _unchanged(before, _model_state(learner))


def test_a_learner_whose_loss_is_not_finite_counts_the_skipped_steps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    learner = _learner()
    batches = list(EventBatch.from_ratings(_stream(1200).ratings).split(400))
    learner.learn(batches[0])
    with torch.no_grad():
        learner.model.dense.attention_weight.fill_(float("nan"))
    before = _model_state(learner)

    learner.learn(batches[1])
    learner.learn(batches[2])

    assert learner.steps_skipped == 2
    assert learner.events_learned == 1200  # in the log: later steps read them as context
    assert _unchanged(before, _model_state(learner))
    assert "its loss was not finite" in caplog.text
    restored = _learner()
    restored.load_state_dict(learner.state_dict())
    assert restored.steps_skipped == 2


def test_a_batch_is_never_answered_with_what_was_cached_for_another() -> None:
    """The evaluator's questions about a batch are cached until the learner learns; a new
    batch object, even one at the address of a freed one, is scored afresh."""
    learner = _learner()
    frame = _stream().ratings
    for batch in EventBatch.from_ratings(frame.iloc[:2000]).split(250):
        learner.learn(batch)
    for start in range(2000, 2400, 20):
        batch = EventBatch.from_ratings(frame.iloc[start : start + 20])
        users, items = learner.features.rows(batch)
        inputs = learner.features.inputs(batch, users, items, learner.device, with_exclusions=False)
        expected = learner.model.predict_ratings(inputs).numpy()
        np.testing.assert_array_equal(learner.predict_ratings(batch), expected)
        del batch  # its memory, and so its id, may go to the next one


def test_row_j_is_scored_without_seeing_events_at_or_after_j() -> None:
    learner = _learner()
    frame = _stream().ratings
    for batch in EventBatch.from_ratings(frame.iloc[:3000]).split(250):
        learner.learn(batch)
    batch = EventBatch.from_ratings(frame.iloc[3000:3100])
    altered = EventBatch(
        batch.user_ids.copy(),
        batch.item_ids.copy(),
        batch.ratings.copy(),
        batch.timestamps.copy(),
    )
    cut = 60
    rng = np.random.default_rng(0)
    altered.item_ids[cut:] = rng.choice(learner.features.items.ids, len(batch) - cut)
    altered.ratings[cut:] = 6.0 - altered.ratings[cut:]
    scores = learner.rank_scores(_query(learner, batch))
    scores_altered = learner.rank_scores(_query(learner, altered))
    # Catalogue columns may differ (new ids); compare on the shared ones.
    shared = np.intersect1d(
        _query(learner, batch).catalog_ids, _query(learner, altered).catalog_ids
    )
    columns = np.searchsorted(_query(learner, batch).catalog_ids, shared)
    columns_altered = np.searchsorted(_query(learner, altered).catalog_ids, shared)
    torch.testing.assert_close(scores[:cut, columns], scores_altered[:cut, columns_altered])
    ratings = learner.predict_ratings(batch)
    ratings_altered = learner.predict_ratings(altered)
    np.testing.assert_allclose(ratings[:cut], ratings_altered[:cut], rtol=1e-6)


def test_catalogue_scores_do_not_depend_on_the_catalogues_order() -> None:
    """The usual catalogue (the model's items in its order, then new ones) is scored straight
    into its columns; any other order is rearranged. Both give each item the same score, and
    an item the model has no row for scores 0."""
    learner = _learner()
    frame = _stream().ratings
    for batch in EventBatch.from_ratings(frame.iloc[:2000]).split(250):
        learner.learn(batch)
    batch = EventBatch.from_ratings(frame.iloc[2000:2100])
    known = learner.features.items.ids
    new = np.array([10**6, 10**6 + 1])
    rows = np.arange(len(batch))
    in_order = np.concatenate([known, new])
    shuffled = np.random.default_rng(0).permutation(in_order)
    by_id = []
    for catalog in (in_order, shuffled):
        mask = candidate_mask(len(catalog), np.full(len(batch), len(catalog)), rows[:0], rows[:0])
        columns = np.searchsorted(np.sort(catalog), batch.item_ids)  # unused by the scores
        query = RankingQuery(
            batch,
            rows,
            catalog,
            columns,
            mask,
            np.full(len(batch), len(catalog)),
            rows[:0],
            rows[:0],
        )
        order = torch.from_numpy(np.argsort(catalog))
        by_id.append(learner.rank_scores(query)[:, order])
    torch.testing.assert_close(by_id[0], by_id[1])
    assert torch.count_nonzero(by_id[0][:, -len(new) :]) == 0
    assert torch.count_nonzero(by_id[0][:, : len(known)]) > 0


def test_a_new_user_is_folded_in_from_their_first_events() -> None:
    # Two disjoint tastes: items 0-19 are always rated together, and so are 100-119.
    rng = np.random.default_rng(1)
    users, items = [], []
    for user in range(200):
        group = 0 if user % 2 else 100
        chosen = rng.choice(20, 12, replace=False) + group
        users += [user] * 12
        items += chosen.tolist()
    n = len(users)
    learner = _learner()
    batches = list(EventBatch.from_arrays(users, items, [5.0] * n, np.arange(n)).split(240))
    for _ in range(3):
        for batch in batches:
            learner.learn(batch)
    newcomer = 10_000
    learner.learn(EventBatch.from_arrays([newcomer] * 3, [101, 105, 110], [5.0] * 3, [n] * 3))
    recommended = [item for item, _ in _served(learner, newcomer, k=10)]
    assert sum(100 <= item < 120 for item in recommended) >= 8
    assert not {101, 105, 110} & set(recommended)


def test_popularity_priors_at_every_horizon_are_blended_by_learned_weights() -> None:
    learner = _learner(model=dataclasses.replace(SMALL, popularity_horizons_days=(1.0, None)))
    assert learner.model.dense.prior_weight.tolist() == [1.0, 0.0, 0.0]  # RecentPopular's prior
    batches = list(EventBatch.from_ratings(_stream().ratings).split(500))
    for batch in batches:
        learner.learn(batch)
    inputs = learner._scored(batches[-1]).inputs
    assert inputs.popularity_prior.shape == (len(learner.features.items), 3)
    all_time = learner.features.popularity_horizons[1]
    expected = np.log1p(all_time.counts_of(learner.features.items.ids))
    np.testing.assert_allclose(inputs.popularity_prior[:, 2].numpy(), expected, rtol=1e-6)
    assert (learner.model.dense.prior_weight[1:] != 0).all()  # the stream moved them


def test_a_stream_years_out_of_time_order_keeps_learning_and_serving() -> None:
    # Partitions of a backlog read one after another: a batch 3,000 days (3,000 half-lives
    # of the 1-day horizon) before the events already counted.
    learner = _learner()
    far = 3_000 * 86_400.0
    learner.learn(EventBatch.from_arrays([1, 2], [10, 20], [5.0, 4.0], [far, far + 1]))
    learner.learn(EventBatch.from_arrays([3, 3], [10, 30], [5.0, 4.0], [0.0, 1.0]))
    items, _, _ = learner.serving_state([3], k=2)
    assert items.tolist() == [[20, -1]]
    prior = learner._scored(EventBatch.from_arrays([4], [10], [5.0], [2.0])).inputs
    assert torch.isfinite(prior.popularity_prior).all()


def test_without_further_horizons_the_prior_is_recent_popularitys_alone() -> None:
    learner = _learner(model=dataclasses.replace(SMALL, popularity_horizons_days=()))
    batch = next(EventBatch.from_ratings(_stream().ratings).split(500))
    learner.learn(batch)
    assert learner.model.dense.prior_weight.shape == (1,)
    assert learner._scored(batch).inputs.popularity_prior.shape[1] == 1


def test_an_unknown_user_gets_the_cold_start_list() -> None:
    learner = _learner()
    for batch in EventBatch.from_ratings(_stream().ratings).split(500):
        learner.learn(batch)
    cold = _served(learner, 987_654, k=5)
    assert len(cold) == 5
    assert cold == sorted(cold, key=lambda pair: -pair[1])
    assert [item for item, _ in cold] == [item for item, _ in learner.snapshot().recommend(None, 5)]


def test_the_snapshot_serves_the_lists_the_learner_publishes() -> None:
    learner = _learner()
    for batch in EventBatch.from_ratings(_stream().ratings).split(500):
        learner.learn(batch)
    users = learner.features.users.ids[:5]
    items, scores, states = learner.serving_state(users, k=10)
    snapshot = learner.snapshot()
    for row, state in enumerate(states):
        served = snapshot.recommend(state, 10)
        assert [item for item, _ in served] == items[row][items[row] >= 0].tolist()
        assert [score for _, score in served] == pytest.approx(
            scores[row][items[row] >= 0].tolist(), rel=1e-5
        )


def test_similar_items_come_from_the_snapshot() -> None:
    learner = _learner()
    for batch in EventBatch.from_ratings(_stream().ratings).split(500):
        learner.learn(batch)
    snapshot = learner.snapshot()
    item = int(snapshot.item_ids[0])
    similar = snapshot.similar(item, k=5)
    assert len(similar) == 5
    assert item not in [i for i, _ in similar]
    assert snapshot.similar(-5 + 10**9, k=5) == []


def test_an_inline_retrain_swaps_in_a_model_that_learned_every_event() -> None:
    learner = _learner(retrain=RetrainConfig(every_events=1500, where="inline", epochs=1))
    for batch in EventBatch.from_ratings(_stream().ratings).split(250):
        learner.learn(batch)
    assert learner.retrains_completed == 2
    assert learner.version == 3
    # The retrained model learned the snapshot then every batch since.
    assert learner.model.events_learned == pytest.approx(learner.events_learned, abs=250 * 4)


def test_online_learning_goes_on_during_a_background_retrain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    started = threading.Event()
    real_fit = retrain_module.fit_stored_events  # type: ignore[attr-defined]  # what it calls

    def held_fit(*args, **kwargs):
        started.set()
        release.wait(timeout=60)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(retrain_module, "fit_stored_events", held_fit)
    learner = _learner(retrain=RetrainConfig(every_events=1000, where="thread", epochs=1))
    batches = list(EventBatch.from_ratings(_stream().ratings).split(250))
    for batch in batches[:4]:
        learner.learn(batch)
    assert started.wait(timeout=60)
    assert learner.retrain_running
    for batch in batches[4:12]:  # learned online while the retrain is held mid-way
        learner.learn(batch)
    assert learner.events_learned == 3000
    assert learner.version == 1
    release.set()
    learner.wait_for_retrain()
    assert learner.version == 2
    assert learner.model.events_learned == learner.events_learned


def test_a_resumed_simulation_matches_an_uninterrupted_one(tmp_path: Path) -> None:
    dataset = _stream(3000)
    learner = LearnerConfig(
        model=SMALL,
        device="cpu",
        retrain=RetrainConfig(every_events=1000, where="inline", epochs=1),
    )
    base = SimulationConfig(learner=learner, stream=StreamConfig(batch_size=100))
    checkpoint = tmp_path / "run.ckpt"
    whole = run_simulation(dataset, base)
    run_simulation(dataset, dataclasses.replace(base, max_events=1800, checkpoint_path=checkpoint))
    resumed = run_simulation(
        dataset, dataclasses.replace(base, checkpoint_path=checkpoint, resume=True)
    )
    assert resumed.prequential.events == whole.prequential.events == 3000
    assert resumed.stream.model_version == whole.stream.model_version
    for name, figures in whole.prequential.models.items():
        again = resumed.prequential.models[name]
        assert again.overall.hr == figures.overall.hr, name
        assert again.overall.ndcg == figures.overall.ndcg, name
        assert again.last20.hr == figures.last20.hr, name
    resumed_rating = resumed.prequential.models["learner"].rating
    whole_rating = whole.prequential.models["learner"].rating
    assert resumed_rating is not None
    assert whole_rating is not None
    assert resumed_rating.rmse == pytest.approx(whole_rating.rmse, abs=1e-6)


def test_unusable_checkpoints_are_refused_clearly(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)
    other = tmp_path / "other.ckpt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(CheckpointError, match="not a recsys-stream checkpoint"):
        load_checkpoint(other)


def test_a_retrain_in_a_process_learns_every_event_and_swaps_in() -> None:
    learner = _learner(retrain=RetrainConfig(every_events=1000, where="process", epochs=1))
    threads = torch.get_num_threads()
    batches = list(EventBatch.from_ratings(_stream().ratings).split(250))
    for batch in batches[:4]:
        learner.learn(batch)
    assert learner.retrain_running
    for batch in batches[4:10]:  # learned online while the child trains
        learner.learn(batch)
    learner.wait_for_retrain()
    assert learner.version == 2
    assert learner.retrains_completed == 1
    assert learner.model.events_learned == learner.events_learned == 2500
    assert torch.get_num_threads() == threads  # the retrain's cores are given back
    before = learner.snapshot().item_vectors.copy()
    learner.learn(batches[10])  # the swapped-in model learns on
    assert not np.array_equal(learner.snapshot().item_vectors[: len(before)], before)


def test_a_process_retrain_is_ready_once_it_has_caught_up_not_as_soon_as_it_is_trained() -> None:
    """Swapping in at once would wait for the child to learn every batch learned online
    during its fit (seconds on a large catalogue, with online learning stopped)."""
    learner = _learner()
    batches = list(EventBatch.from_ratings(_stream().ratings).split(250))
    for batch in batches[:4]:
        learner.learn(batch)
    model = ContextualNeuMF(learner.config.model, seed=1)
    retrain = ProcessRetrain(learner.features, model, RetrainConfig(epochs=1), seed=1)
    retrain.start()
    for batch in batches[4:10]:  # learned online while the child starts and fits
        retrain.record(batch)
    assert retrain.wait_until_ready(timeout=120)
    assert retrain.backlog <= 1
    retrained = retrain.finish()
    assert retrained is not None
    assert retrained.events_learned == 2500


def test_a_retrain_is_not_due_before_its_child_is_trained() -> None:
    catch_up = CatchUp(sent=3)
    catch_up.learned(3)
    assert not catch_up.due


def test_a_child_that_cannot_catch_up_is_swapped_in_after_as_many_batches_again() -> None:
    """Online learning as fast as the child: waiting for it to catch up would never end."""
    catch_up = CatchUp(sent=6)
    catch_up.trained()  # 6 behind
    for learned in range(1, 6):  # the child learns one batch while online learning sends one
        catch_up.sent += 1
        catch_up.learned(learned)
        assert not catch_up.due
    catch_up.sent += 1  # 12 sent: due, 7 behind; the swap waits for those 7 and no more
    assert catch_up.due


def test_a_copy_of_the_features_rebuilds_the_inputs_the_learner_trained_on() -> None:
    """A retrain receives the events learned online meanwhile, not their inputs: its copy of
    the features (taken at the retrain's start) must rebuild exactly the same inputs."""
    learner = _learner()
    batches = list(EventBatch.from_ratings(_stream().ratings).split(250))
    for batch in batches[:4]:
        learner.learn(batch)
    copy = StreamFeatures.from_state_dict(learner.features.state_dict(), learner.features)
    for batch in batches[4:8]:
        online, n_users, n_items = learner.features.advance(batch, learner.device)
        rebuilt, copy_users, copy_items = copy.advance(batch, learner.device)
        assert (copy_users, copy_items) == (n_users, n_items)
        for field in dataclasses.fields(online):
            value, copied = getattr(online, field.name), getattr(rebuilt, field.name)
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, copied), field
            else:
                assert value == copied, field


def test_a_retrain_process_that_dies_leaves_the_current_model_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    learner = _learner(retrain=RetrainConfig(every_events=1000, where="process", epochs=1))
    threads = torch.get_num_threads()
    batches = list(EventBatch.from_ratings(_stream().ratings).split(250))
    earlier = set(multiprocessing.active_children())
    for batch in batches[:4]:
        learner.learn(batch)
    (child,) = set(multiprocessing.active_children()) - earlier
    child.kill()
    child.join(30)
    learner.wait_for_retrain()  # returns: the failure is noticed, not waited on
    assert learner.version == 1
    assert "retrain process ended with exit code -9" in caplog.text
    assert learner.retrains_completed == 0
    assert torch.get_num_threads() == threads
    for batch in batches[4:8]:  # online learning goes on, and the next retrain runs
        learner.learn(batch)
    assert learner.events_learned == 2000
    learner.wait_for_retrain()
    assert learner.version == 2


def test_a_retrain_process_that_cannot_start_leaves_online_learning_going(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(self: multiprocessing.process.BaseProcess) -> None:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refused)
    learner = _learner(retrain=RetrainConfig(every_events=1000, where="process", epochs=1))
    threads = torch.get_num_threads()
    batches = list(EventBatch.from_ratings(_stream().ratings).split(250))
    for batch in batches[:6]:  # the retrain is due after the 4th: its start fails
        learner.learn(batch)
    assert learner.events_learned == 1500
    assert learner.version == 1
    assert "the retrain process did not start" in caplog.text
    assert torch.get_num_threads() == threads
    learner.close()
