"""The embedded simulation: a dataset replayed through the in-process event log into the learner.

This is `make demo`: the same stream processor the Faust trainer runs, fed by an in-memory log
instead of Kafka, with the prequential evaluation of the learner against the protocol's
baselines, and a run directory with the report, a summary and plots.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from recsys_stream.checkpoint import load_checkpoint, restore_processor, save_checkpoint
from recsys_stream.data import Dataset
from recsys_stream.eventlog import InMemoryEventLog, LogConsumer
from recsys_stream.outputs import InMemorySink, OutputSink
from recsys_stream.pipeline import LEARNER, StreamProcessor
from recsys_stream.settings import LearnerConfig


@dataclass(frozen=True)
class SimulationConfig:
    """How a simulation runs (the learner's own settings are in ``learner``)."""

    learner: LearnerConfig = field(default_factory=LearnerConfig)
    batch_size: int = 256
    k: int = 10
    baselines: bool = True
    window: int = 5_000
    max_events: int | None = None
    checkpoint_path: Path | None = None
    checkpoint_every_events: int | None = None
    resume: bool = False
    """Continue from ``checkpoint_path`` if it exists."""


ProgressCallback = Callable[[int, dict[str, Any]], None]
"""Called after each micro-batch with the events processed so far and live figures."""


def fill_log(dataset: Dataset, log: InMemoryEventLog, max_events: int | None = None) -> int:
    """Append the dataset's ratings, in stream order, as encoded events keyed by user."""
    ratings = dataset.ratings if max_events is None else dataset.ratings.iloc[:max_events]
    columns = (ratings[name].to_numpy() for name in ("user_id", "item_id", "rating", "timestamp"))
    values, keys = [], []
    for user, item, rating, timestamp in zip(*columns, strict=True):
        payload = {
            "user_id": int(user),
            "item_id": int(item),
            "rating": float(rating),
            "timestamp": int(timestamp),
        }
        values.append(orjson.dumps(payload))
        keys.append(str(int(user)).encode())
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
) -> dict[str, Any]:
    """Replay ``dataset`` and return the report (see :func:`build_report`).

    With ``follow_until``, the run goes on after the dataset, learning whatever else is appended
    to ``log`` (e.g. events posted to the API), until the event is set.
    """
    sink = sink if sink is not None else InMemorySink()
    processor = StreamProcessor.create(
        config.learner,
        sink,
        baselines=config.baselines,
        k=config.k,
        rating_range=dataset.rating_range,
        window=config.window,
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
    try:
        while True:
            records = consumer.poll(config.batch_size)
            if not records:
                if follow_until is None or follow_until.is_set():
                    break
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
    finally:
        processor.learner.close()
    wall = time.perf_counter() - started
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
) -> dict[str, Any]:
    """The run's report: the evaluator's figures plus what describes the run itself."""
    report = processor.publish_metrics()
    report.update(
        dataset=dataset.name,
        batch_size=config.batch_size,
        wall_seconds=wall_seconds,
        events_per_second=events_this_run / wall_seconds if wall_seconds > 0 else 0.0,
        seconds_per_model=processor.evaluator.seconds_per_model,
        device=str(processor.learner.device),
        training_loss=processor.loss_series,
        learner_config=_plain(asdict(config.learner)),
        baseline_batching="exact per event (equivalent to batch size 1)",
    )
    return report


def write_report(report: dict[str, Any], out_dir: Path) -> Path:
    """Write ``report.json`` into ``out_dir`` (created); returns its path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    return path


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
