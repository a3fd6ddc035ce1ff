"""The embedded simulation: a dataset replayed through the in-process event log into the learner.

This is `make demo`: the same stream processor the Faust trainer runs, fed by an in-memory log
instead of Kafka, with the prequential evaluation of the learner against the protocol's
baselines, and a run directory with the report, a summary and plots.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from recsys_stream.data import Dataset
from recsys_stream.events import EventValidationError, InMemoryEventLog, LogConsumer, encode_rows
from recsys_stream.report import RunReport
from recsys_stream.serving import InMemorySink, OutputSink
from recsys_stream.settings import LearnerConfig, Settings, StreamConfig
from recsys_stream.stream.checkpoint import load_checkpoint, restore_processor, save_checkpoint
from recsys_stream.stream.processor import LEARNER, StreamProcessor


@dataclass(frozen=True)
class SimulationConfig:
    """How a simulation runs: the learner and the stream as the settings give them, and what
    belongs to one run (how far, where to checkpoint)."""

    learner: LearnerConfig = field(default_factory=LearnerConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    max_events: int | None = None
    checkpoint_path: Path | None = None
    checkpoint_every_events: int | None = None
    resume: bool = False
    """Continue from ``checkpoint_path`` if it exists."""

    @classmethod
    def from_settings(cls, settings: Settings, **run: Any) -> SimulationConfig:
        """The settings' learner and stream, with ``run``'s own fields."""
        return cls(learner=settings.learner, stream=settings.stream, **run)


ProgressCallback = Callable[[int, dict[str, Any]], None]
"""Called after each micro-batch with the events processed so far and live figures."""


def fill_log(dataset: Dataset, log: InMemoryEventLog, max_events: int | None = None) -> int:
    """Append the dataset's ratings, in stream order, as encoded events keyed by user."""
    ratings = dataset.ratings if max_events is None else dataset.ratings.iloc[:max_events]
    columns = [ratings[name].to_numpy() for name in ("user_id", "item_id", "rating", "timestamp")]
    values, keys = [], []
    key_of_user: dict[int, bytes] = {}  # one key object per user, shared by their events
    for payload, user, item, rating, timestamp in zip(
        encode_rows(*columns), *(column.tolist() for column in columns), strict=True
    ):
        if isinstance(payload, EventValidationError):
            # Kept as the dataset has it: the processor dead-letters it with its reason, as the
            # trainer does with a bad message in Kafka.
            fields = {"user_id": user, "item_id": item, "rating": rating, "timestamp": timestamp}
            payload = orjson.dumps(fields)
        values.append(payload)
        key = key_of_user.get(user)
        if key is None:
            key = key_of_user[user] = str(user).encode()
        keys.append(key)
    log.extend(values, keys)
    return len(values)


def run_simulation(
    dataset: Dataset,
    config: SimulationConfig,
    *,
    sink: OutputSink | None = None,
    progress: ProgressCallback | None = None,
    log: InMemoryEventLog | None = None,
    follow_until: threading.Event | None = None,
    on_replayed: Callable[[RunReport], None] | None = None,
    processor: StreamProcessor | None = None,
) -> RunReport:
    """Replay ``dataset`` and return the run's report.

    With ``follow_until``, the run goes on after the dataset, learning whatever else is appended
    to ``log`` (e.g. events posted to the API), until the event is set; ``on_replayed`` is then
    handed the report of the dataset once it has all been learned, and while following, the
    figures are published whenever the log runs dry with new events learned (a dashboard sees
    posted events counted without waiting for the next full report interval).

    ``processor``, when given, is run instead of a fresh one from ``config`` (and ``sink``):
    the caller can then read its evaluator's per-event records after the run.
    """
    sink = sink if sink is not None else InMemorySink()
    if processor is None:
        processor = StreamProcessor.create(
            config.learner, config.stream, sink, rating_range=dataset.rating_range
        )
    log = log if log is not None else InMemoryEventLog(partitions=1)
    total = fill_log(dataset, log, config.max_events)
    consumer = LogConsumer(log)
    if config.resume and config.checkpoint_path is not None and config.checkpoint_path.exists():
        state = load_checkpoint(config.checkpoint_path)
        restore_processor(processor, state)
        consumer.positions = [state["positions"][_source(p)] for p in range(log.partitions)]
    started = time.perf_counter()
    events_at_start = processor.evaluator.events_seen
    last_checkpoint = events_at_start
    replayed = False
    published = processor.evaluator.events_seen
    try:
        while True:
            records = consumer.poll(config.stream.batch_size)
            if not records:
                if follow_until is None or follow_until.is_set():
                    break
                done = processor.evaluator.events_seen
                if not replayed:
                    replayed = True
                    processor.swap_in_retrain(wait=True)
                    wall = time.perf_counter() - started
                    report = build_report(processor, dataset, config, wall, done - events_at_start)
                    published = done
                    if on_replayed is not None:
                        on_replayed(report)
                elif done > published:
                    processor.publish_metrics()
                    published = done
                processor.swap_in_retrain()
                log.wait_for_records(consumer.positions, timeout=0.5)
                continue
            processor.process_records(
                [r.value for r in records], [f"{_source(r.partition)}@{r.offset}" for r in records]
            )
            done = processor.evaluator.events_seen
            if progress is not None:
                progress(done, {"hr@10": processor.evaluator.hit_rate(LEARNER), "total": total})
            every = config.checkpoint_every_events
            if config.checkpoint_path is not None and every and done - last_checkpoint >= every:
                save_checkpoint(config.checkpoint_path, processor, _positions(consumer))
                last_checkpoint = done
    except KeyboardInterrupt:
        if follow_until is None:
            raise
        follow_until.set()  # Ctrl-C ends following; the run is reported as usual
        wall = time.perf_counter() - started
    else:
        wall = time.perf_counter() - started
        # The stream is done: the retrain it started completes, so that the final model (and
        # checkpoint) holds it.
        processor.swap_in_retrain(wait=True)
    finally:
        processor.learner.close()
    if config.checkpoint_path is not None:
        save_checkpoint(config.checkpoint_path, processor, _positions(consumer))
    return build_report(
        processor, dataset, config, wall, processor.evaluator.events_seen - events_at_start
    )


def build_report(
    processor: StreamProcessor,
    dataset: Dataset,
    config: SimulationConfig,
    wall_seconds: float,
    events_this_run: int,
) -> RunReport:
    """The run's report: the evaluator's figures plus what describes the run itself."""
    return RunReport(
        stream=processor.publish_metrics(),
        dataset=dataset.name,
        batch_size=config.stream.batch_size,
        wall_seconds=wall_seconds,
        events_per_second=events_this_run / wall_seconds if wall_seconds > 0 else 0.0,
        seconds_per_model=dict(processor.evaluator.seconds_per_model),
        device=str(processor.learner.device),
        training_loss=processor.loss_series,
        learner_config=_plain(dataclasses.asdict(config.learner)),
        baseline_batching="exact per event (equivalent to batch size 1)",
    )


def _source(partition: int) -> str:
    return f"embedded/{partition}"


def _positions(consumer: LogConsumer) -> dict[str, int]:
    return {_source(p): offset for p, offset in enumerate(consumer.positions)}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value
