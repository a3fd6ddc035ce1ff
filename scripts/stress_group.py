"""Stress a scaled-out group's model on the core alone: ``python -m scripts.stress_group``.

Three :class:`~recsys_stream.stream.Replica` workers learn MovieLens 100K (``RECSYS_DATA_DIR``)
split into 6 partitions by the replay's rule, as a consumer group of a backlog would: each
worker reads its partitions in random chunks, so the workers drift apart in event time. Each
publishes an update every 500 events to a shared log, which every worker reads back up to 3
messages late; worker 0 refits the group's model every ``retrain.every_events`` (inline by
default, or in a process as the trainer does: ``--refits process``) and publishes the base,
which every worker adopts where it lies in the log. At the end, each seed prints the group's
HR@10, the steps each worker skipped for a non-finite loss, updates refused as unreadable, any
parameter that is not finite and any popularity count below 0. It runs the workers' code path
without Kafka (no broker, ~40 s a seed on 2 cores), to hunt faults that a full
``bench_workers`` run shows too rarely to debug.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from recsys_stream.data import load_dataset
from recsys_stream.events import RatingEvent, encode
from recsys_stream.learner import ModelBase
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import LearnerConfig, Settings, StreamConfig
from recsys_stream.stream import ModelUpdate, Replica, StreamProcessor
from services.topics import partition_of

PARTITIONS = 6
WORKERS = 3
UPDATE_EVERY = 500
MAX_LAG = 3
"""Messages of the log a worker may not have read yet when it learns."""


@dataclass
class _Group:
    replicas: list[Replica]
    log: list[bytes | ModelBase] = field(default_factory=list)
    read: list[int] = field(default_factory=list)
    refused: int = 0

    def read_log(self, worker: int, until: int) -> None:
        replica = self.replicas[worker]
        while self.read[worker] < until:
            entry = self.log[self.read[worker]]
            self.read[worker] += 1
            if isinstance(entry, ModelBase):
                replica.adopt(entry)
                continue
            try:
                replica.apply(ModelUpdate.from_bytes(entry))
            except ValueError as exc:
                self.refused += 1
                print(f"  worker {worker} refused an update: {exc}")


def _partitions(data_dir: Path | None) -> list[list[bytes | None]]:
    ratings = load_dataset("ml-100k", data_dir=data_dir, allow_download=False).ratings
    parts: list[list[bytes | None]] = [[] for _ in range(PARTITIONS)]
    columns = zip(ratings.user_id, ratings.item_id, ratings.rating, ratings.timestamp, strict=True)
    for user, item, rating, timestamp in columns:
        event = RatingEvent(int(user), int(item), float(rating), int(timestamp))
        parts[partition_of(str(user).encode(), PARTITIONS)].append(encode(event))
    return parts


def run(seed: int, parts: list[list[bytes | None]], config: LearnerConfig) -> str:
    """One group's run over ``parts``; a line that says how it went."""
    rng = np.random.default_rng(seed)
    stream = StreamConfig(baselines=False)
    group = _Group(
        [
            Replica(StreamProcessor.create(config, stream, InMemorySink()), origin=f"w{w}")
            for w in range(WORKERS)
        ],
        read=[0] * WORKERS,
    )
    owned = [[p for p in range(PARTITIONS) if p % WORKERS == w] for w in range(WORKERS)]
    position = [0] * PARTITIONS
    since_update = [0] * WORKERS
    leader, every = group.replicas[0], config.retrain.every_events
    refitting = False
    while any(position[p] < len(parts[p]) for p in range(PARTITIONS)):
        worker = int(rng.integers(WORKERS))
        left = [p for p in owned[worker] if position[p] < len(parts[p])]
        if not left:
            continue
        partition = left[int(rng.integers(len(left)))]
        start = position[partition]
        chunk = parts[partition][start : start + int(rng.integers(50, 600))]
        group.replicas[worker].learn(chunk, str(partition), start)
        position[partition] += len(chunk)
        since_update[worker] += len(chunk)
        if since_update[worker] >= UPDATE_EVERY:
            group.log.append(group.replicas[worker].take().to_bytes())
            since_update[worker] = 0
        lag = int(rng.integers(0, MAX_LAG + 1))
        group.read_log(worker, max(group.read[worker], len(group.log) - lag))
        if refitting:
            base = leader.take_base()
            if base is not None:
                group.log.append(base)
                leader.events_at_base = leader.events_held  # as the group's leader does
                refitting = False
        elif every is not None and leader.events_held - leader.events_at_base >= every:
            leader.start_refit()
            refitting = True
    group.log.extend(replica.take().to_bytes() for replica in group.replicas)
    for worker in range(WORKERS):
        group.read_log(worker, len(group.log))
    hr = leader.processor.evaluator.report().models["learner"].overall.hr
    skipped = [replica.processor.learner.steps_skipped for replica in group.replicas]
    return (
        f"seed {seed}: group HR@10 {hr:.4f}, steps skipped {skipped}, updates refused "
        f"{group.refused}, faults: {_faults(group.replicas) or 'none'}"
    )


def _faults(replicas: list[Replica]) -> list[str]:
    """Parameters that are not finite, and popularity counts below 0 (counted occurrences
    can only add up; a negative count is state exchanged wrongly)."""
    found = []
    for worker, replica in enumerate(replicas):
        features = replica.processor.learner.features
        for counts in features.popularities:
            lowest = float(counts.counts_of(features.items.ids).min(initial=0.0))
            if lowest < -1e-6:
                found.append(
                    f"w{worker} counts of the {counts.half_life_days}-day horizon {lowest:.3g}"
                )
        model = replica.processor.learner.model
        tensors = {
            "item_embedding": model.item_embedding.active(),
            "item_bias": model.item_bias.active(),
            "user_embedding": model.user_embedding.active(),
            **{f"dense.{name}": value for name, value in model.dense.state_dict().items()},
        }
        found += [f"w{worker} {name}" for name, t in tensors.items() if not torch.isfinite(t).all()]
    return found


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("seeds", nargs="*", type=int, default=[0], help="one run per seed")
    parser.add_argument(
        "--refits",
        choices=("inline", "process"),
        default="inline",
        help="where the leader refits (inline: the same runs for the same seed)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=settings.data.data_dir,
        help="the folder that holds ml-100k/ (the setting RECSYS_DATA_DIR)",
    )
    args = parser.parse_args()
    retrain = dataclasses.replace(settings.learner.retrain, where=args.refits)
    config = dataclasses.replace(settings.learner, retrain=retrain)
    parts = _partitions(args.data_dir)
    for seed in args.seeds:
        print(run(seed, parts, config), flush=True)


if __name__ == "__main__":
    main()
