"""The stream processor and the embedded simulation: dead letters, outputs, the report."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import orjson
import pytest

from recsys_stream.data import generate_synthetic
from recsys_stream.events import EventValidationError, InMemoryEventLog, RatingEvent, decode, encode
from recsys_stream.reporting import write_run
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, StreamConfig
from recsys_stream.stream import SimulationConfig, StreamProcessor, fill_log, run_simulation

CONFIG = LearnerConfig(
    model=ModelConfig(dim=16, context_length=8, mlp_hidden=16, sampled_negatives=64),
    retrain=RetrainConfig(every_events=None),
    device="cpu",
)


def test_bad_messages_become_dead_letters_and_the_rest_is_learned() -> None:
    sink = InMemorySink()
    processor = StreamProcessor.create(CONFIG, StreamConfig(baselines=False), sink)
    good = [encode(RatingEvent(u, 100 + u % 3, 4.0, u)) for u in range(5)]
    bad: list[bytes | None] = [
        b"{",
        b'{"user_id": 1}',
        encode(RatingEvent(9, 9, 1.0, 9))[:-1],
        None,
    ]
    result = processor.process_records(
        [*good[:2], *bad, *good[2:]], [f"t/0@{i}" for i in range(len(good) + len(bad))]
    )
    assert result.learned == 5
    assert len(result.dead_letters) == 4
    assert [letter.source for letter in result.dead_letters] == ["t/0@2", "t/0@3", "t/0@4", "t/0@5"]
    assert list(sink.dead_letters) == result.dead_letters
    assert "missing required field" in sink.dead_letters[1].reason
    assert sink.dead_letters[0].payload == b"{"
    assert processor.learner.events_learned == 5
    # Every user touched by the batch has a fresh top-K list with the model version.
    assert sorted(sink.recommendations) == [0, 1, 2, 3, 4]
    assert all(entry.model_version == 1 for entry in sink.recommendations.values())


def test_a_simulation_report_holds_what_the_issue_asks(tmp_path: Path) -> None:
    dataset = generate_synthetic(2500, n_users=40, n_items=80, seed=5)
    run = run_simulation(
        dataset, SimulationConfig(learner=CONFIG, stream=StreamConfig(batch_size=128))
    )
    report = run.to_dict()  # as report.json holds it
    for key in (
        "dataset",
        "events",
        "relevant_events",
        "batch_size",
        "k",
        "events_per_second",
        "wall_seconds",
    ):
        assert key in report
    assert report["events"] == 2500
    assert set(report["models"]) == {"learner", "most_popular", "recent_popular", "cooc_knn"}
    for figures in report["models"].values():
        for key in (
            "hr@10",
            "ndcg@10",
            "precision@10",
            "recall@10",
            "f1@10",
            "hr@10_last20",
            "hr@10_warm",
        ):
            assert 0.0 <= figures[key] <= 1.0
    assert report["models"]["learner"]["rmse"] > 0
    assert report["models"]["learner"]["mae"] > 0
    paths = write_run(run, tmp_path / "run")
    names = {path.name for path in paths}
    assert {"report.json", "summary.md", "metrics.png", "loss.png"} <= names
    assert orjson.loads((tmp_path / "run" / "report.json").read_bytes())["events"] == 2500


def test_a_retrain_running_when_the_stream_ends_is_completed_and_served() -> None:
    dataset = generate_synthetic(2500, n_users=40, n_items=80, seed=5)
    learner = dataclasses.replace(
        CONFIG, retrain=RetrainConfig(every_events=2500, where="thread", epochs=1)
    )
    sink = InMemorySink()
    run = run_simulation(
        dataset,
        SimulationConfig(learner=learner, stream=StreamConfig(batch_size=500, baselines=False)),
        sink=sink,
    )
    # Started by the last batch; swapped in after it rather than dropped.
    assert run.stream.retrains_completed == 1
    assert run.stream.model_version == 2
    snapshot = sink.snapshot()
    assert snapshot is not None
    assert snapshot.version == 2


def test_an_idle_processor_swaps_in_a_finished_retrain_and_publishes_it() -> None:
    learner = dataclasses.replace(
        CONFIG, retrain=RetrainConfig(every_events=None, where="thread", epochs=1)
    )
    sink = InMemorySink()
    processor = StreamProcessor.create(learner, StreamConfig(baselines=False), sink)
    events = generate_synthetic(600, n_users=30, n_items=50, seed=2).ratings
    processor.process_records(
        [encode(RatingEvent(*row)) for row in events.itertuples(index=False)],
        [f"t/0@{i}" for i in range(len(events))],
    )
    assert not processor.swap_in_retrain()  # none running
    processor.learner.start_retrain()
    assert processor.swap_in_retrain(wait=True)
    assert processor.learner.version == 2
    snapshot = sink.snapshot()
    assert snapshot is not None
    assert snapshot.version == 2
    assert sink.latest_report is not None
    assert sink.latest_report.model_version == 2


def test_the_embedded_log_holds_each_row_as_its_event_and_a_bad_row_as_the_dataset_has_it() -> None:
    dataset = generate_synthetic(50, n_users=5, n_items=10, seed=1)
    ratings = dataset.ratings.copy()
    ratings.loc[3, "rating"] = 9.0
    log = InMemoryEventLog()
    assert fill_log(dataclasses.replace(dataset, ratings=ratings), log) == 50
    values = [record.value for record in log.read(0, 0, 100)]
    row = ratings.iloc[3]
    assert orjson.loads(values[3]) == {
        "user_id": row.user_id, "item_id": row.item_id, "rating": 9.0, "timestamp": row.timestamp
    }  # fmt: skip
    with pytest.raises(EventValidationError, match="rating: must be between"):
        decode(values[3])
    good = ratings.drop(index=3)
    assert [decode(value) for value in values[:3] + values[4:]] == [
        RatingEvent(int(u), int(i), float(r), float(t))
        for u, i, r, t in good[["user_id", "item_id", "rating", "timestamp"]].itertuples(
            index=False
        )
    ]
