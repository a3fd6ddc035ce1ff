"""Scale-out, simulated on the core: W trainer workers split users by partition, items shared.

MovieLens 100K is split into 6 partitions by the replay's rule (murmur2 of the user id), and
partition p goes to worker ``p % W``, as a consumer group would hand them out. Each worker is an
:class:`OnlineLearner` with its own :class:`PrequentialEvaluator`, learning its events in
micro-batches; the workers take turns in event-time order. Every ``EXCHANGE_EVERY`` events of
the group, each worker takes the delta of its item-side state (:class:`ItemSharing`), sends it
through its binary form, and applies every other worker's; the other workers' new items join
its catalogue. HR@10 is over every relevant event of the stream, summed across workers.

Figures, all from one run:

- HR@10 of 2 and 3 workers against one worker on the whole stream (goal >= 0.95x). Per-worker
  retrains are off in the sharded runs (a retrain's refit cannot be summed as a delta; group
  retrains are not built yet), so the single worker is measured both ways;
- the same without any exchange (each worker alone with its users' events): what sharing earns;
- the exchange's cost per worker against the learning time between two exchanges, and from it
  a model of the throughput of W workers on W cores: each learns ``EXCHANGE_EVERY / W`` events
  in ``t_learn`` seconds, then spends ``t_exchange`` on taking one delta and applying W - 1, so
  the group's speed-up over one worker is ``W * t_learn / (t_learn + t_exchange)``. On a
  2-core machine the workers cannot run side by side; this is the model, not a measurement of
  parallel workers.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from common import NO_ML_100K, Result, ml_100k_root, save, save_skipped

from recsys_stream.data import load_dataset
from recsys_stream.evaluation.prequential import PrequentialEvaluator
from recsys_stream.events import EventBatch
from recsys_stream.learner import (
    ItemDelta,
    ItemSharing,
    OnlineLearner,
    UserStates,
    export_users,
    import_users,
)
from recsys_stream.settings import LearnerConfig, Settings
from services.topics import partition_of

COMMAND = ".venv/bin/python benchmarks/bench_scaleout.py (make bench)"
PARTITIONS = 6
EXCHANGE_EVERY = 1_000
"""Events of the group between two exchanges (the staleness bound, in events)."""
STALENESS_SWEEP = (1_000, 2_000, 10_000)


@dataclass(frozen=True)
class Run:
    workers: int
    exchange_every: int | None
    hit_rate: float
    relevant: int
    seconds: float
    learning_seconds: float
    exchange_seconds: float
    exchanges: int
    delta_bytes: int
    """Bytes of every delta sent, in all."""


@dataclass(frozen=True)
class Move:
    """Halfway through the stream (in events), the group changes from ``Run.workers`` to
    ``workers``: partition p moves from worker ``p % before`` to ``p % after``."""

    workers: int
    handover: bool
    """Whether the learner's state of a moving partition's users goes with it (the
    evaluator's always does: it is the measurement, not the model)."""


class _Group:
    """The simulated workers: one learner, evaluator and item sharing each."""

    def __init__(self, config: LearnerConfig, size: int) -> None:
        self.learners = [OnlineLearner(config) for _ in range(size)]
        self.evaluators = [PrequentialEvaluator({"learner": learner}) for learner in self.learners]
        self.sharings = [ItemSharing(learner) for learner in self.learners]
        self.learning = self.exchanging = 0.0
        self.exchanges = self.delta_bytes = 0

    def exchange(self) -> None:
        began = time.perf_counter()
        sent = [sharing.take().to_bytes() for sharing in self.sharings]
        for index, sharing in enumerate(self.sharings):
            for other, data in enumerate(sent):
                if other != index:
                    delta = ItemDelta.from_bytes(data)
                    sharing.apply(delta)
                    self.evaluators[index].extend_catalog(delta.item_ids)
        self.exchanging += time.perf_counter() - began
        self.delta_bytes += sum(len(data) for data in sent)
        self.exchanges += 1

    def learn(
        self,
        ratings: pd.DataFrame,
        partitions: npt.NDArray[np.int64],
        workers: int,
        exchange_every: int | None,
        batch_size: int,
    ) -> None:
        """Learn ``ratings`` with partition p on worker ``p % workers``: each worker its own
        micro-batches, the workers taking turns in event-time order."""
        streams = [
            list(EventBatch.from_ratings(ratings[partitions % workers == w]).split(batch_size))
            for w in range(workers)
        ]
        nexts = [0] * workers
        since = 0
        while True:
            waiting = [w for w in range(workers) if nexts[w] < len(streams[w])]
            if not waiting:
                return
            w = min(waiting, key=lambda w: streams[w][nexts[w]].timestamps[0])
            batch = streams[w][nexts[w]]
            nexts[w] += 1
            began = time.perf_counter()
            self.evaluators[w].process(batch)
            self.learning += time.perf_counter() - began
            since += len(batch)
            if exchange_every is not None and len(self.learners) > 1 and since >= exchange_every:
                self.exchange()
                since = 0


def _simulate(
    ratings: pd.DataFrame,
    config: LearnerConfig,
    workers: int,
    exchange_every: int | None,
    move: Move | None = None,
) -> Run:
    batch_size = Settings().stream.batch_size
    partitions = np.array(
        [partition_of(str(user).encode(), PARTITIONS) for user in ratings["user_id"]]
    )
    group = _Group(config, max(workers, move.workers if move is not None else workers))
    started = time.perf_counter()
    if move is None:
        group.learn(ratings, partitions, workers, exchange_every, batch_size)
    else:
        half = len(ratings) // 2
        group.learn(ratings[:half], partitions[:half], workers, exchange_every, batch_size)
        group.exchange()
        _move_partitions(ratings[:half], partitions[:half], workers, move, group)
        group.learn(ratings[half:], partitions[half:], move.workers, exchange_every, batch_size)
    seconds = time.perf_counter() - started
    ranks = np.concatenate([e.ranking_log("learner").ranks for e in group.evaluators])
    for learner in group.learners:
        learner.close()
    return Run(
        workers,
        exchange_every,
        float((ranks < 10).mean()),
        len(ranks),
        seconds,
        group.learning,
        group.exchanging,
        group.exchanges,
        group.delta_bytes,
    )


def _move_partitions(
    ratings: pd.DataFrame,
    partitions: npt.NDArray[np.int64],
    before: int,
    move: Move,
    group: _Group,
) -> None:
    """Hand each moving partition's users (those of ``ratings``, the stream so far) from its
    old worker to its new one, through the handover's binary form."""
    users = ratings["user_id"].to_numpy()
    for partition in range(PARTITIONS):
        source, target = partition % before, partition % move.workers
        if source == target:
            continue
        moving = np.unique(users[partitions == partition])
        histories = group.evaluators[source].export_users(moving)
        group.evaluators[target].import_users(histories)
        if move.handover:
            data = export_users(group.learners[source], moving).to_bytes()
            import_users(group.learners[target], UserStates.from_bytes(data))


def main() -> int:
    torch.set_num_threads(1)  # one core per simulated worker
    root = ml_100k_root()
    if root is None:
        return save_skipped(
            "scaleout",
            Result("HR@10, 2 workers / 1", None, "x", ">= 0.95x", None, COMMAND, "ml-100k"),
            NO_ML_100K,
        )
    ratings = load_dataset("ml-100k", data_dir=root, allow_download=False).ratings
    defaults = Settings().learner
    inline = dataclasses.replace(
        defaults, retrain=dataclasses.replace(defaults.retrain, where="inline")
    )
    no_retrain = dataclasses.replace(
        defaults, retrain=dataclasses.replace(defaults.retrain, every_events=None)
    )
    single = _simulate(ratings, inline, 1, None)
    single_alone = _simulate(ratings, no_retrain, 1, None)
    data = f"ml-100k, {PARTITIONS} partitions by murmur2(user id), partition p on worker p % W"
    results: list[Result] = []
    for workers in (2, 3):
        shared = _simulate(ratings, no_retrain, workers, EXCHANGE_EVERY)
        isolated = _simulate(ratings, no_retrain, workers, None)
        per_exchange = shared.exchange_seconds / max(shared.exchanges, 1)
        learn_between = shared.learning_seconds / max(shared.exchanges, 1) / workers
        exchange_per_worker = per_exchange / workers
        speedup = workers * learn_between / (learn_between + exchange_per_worker)
        delta_bytes = shared.delta_bytes / max(shared.exchanges, 1) / workers
        results += [
            Result(
                f"HR@10 with {workers} workers sharing items, against one worker",
                shared.hit_rate,
                "HR@10",
                ">= 0.95x",
                shared.hit_rate >= 0.95 * single.hit_rate,
                COMMAND,
                data,
                baseline=f"one worker, default retrains ({single.hit_rate:.4f}); "
                f"one worker without retrains {single_alone.hit_rate:.4f} "
                f"({shared.hit_rate / single_alone.hit_rate:.3f}x)",
                baseline_value=single.hit_rate,
                note=f"exchange every {EXCHANGE_EVERY:,} events of the group; per-worker "
                f"retrains off; without any exchange {isolated.hit_rate:.4f} "
                f"({isolated.hit_rate / single.hit_rate:.3f}x)",
                extra={
                    "without_exchange": isolated.hit_rate,
                    "one_worker_without_retrains": single_alone.hit_rate,
                    "relevant_events": shared.relevant,
                },
            ),
            Result(
                f"modelled speed-up of {workers} workers on {workers} cores",
                speedup,
                "x",
                ">= 1.7x" if workers == 2 else "",
                speedup >= 1.7 if workers == 2 else None,
                COMMAND,
                data,
                baseline="one worker (= 1)",
                baseline_value=1.0,
                note=f"a model from this run's costs, not parallel workers: per worker "
                f"{learn_between * 1000:.1f} ms learning {EXCHANGE_EVERY // workers} events "
                f"between exchanges, {exchange_per_worker * 1000:.1f} ms on one take and "
                f"{workers - 1} applies; {delta_bytes:,.0f} bytes per delta",
                extra={
                    "learning_ms_between_exchanges": learn_between * 1000,
                    "exchange_ms_per_worker": exchange_per_worker * 1000,
                    "delta_bytes_mean": delta_bytes,
                    "exchanges": shared.exchanges,
                },
            ),
        ]
    for before, after, what in ((3, 2, "a worker leaves"), (2, 3, "a worker joins")):
        kept = _simulate(ratings, no_retrain, before, EXCHANGE_EVERY, Move(after, handover=True))
        lost = _simulate(ratings, no_retrain, before, EXCHANGE_EVERY, Move(after, handover=False))
        results.append(
            Result(
                f"HR@10 when {what} halfway ({before} -> {after} workers), users handed over",
                kept.hit_rate,
                "HR@10",
                ">= 0.95x",
                kept.hit_rate >= 0.95 * single.hit_rate,
                COMMAND,
                data,
                baseline=f"one worker, default retrains ({single.hit_rate:.4f})",
                baseline_value=single.hit_rate,
                note=f"the moving partitions' users go with them (export_users / "
                f"import_users); without that handover {lost.hit_rate:.4f} "
                f"({lost.hit_rate / single.hit_rate:.3f}x)",
                extra={"without_handover": lost.hit_rate, "relevant_events": kept.relevant},
            )
        )
    for every in STALENESS_SWEEP[1:]:
        stale = _simulate(ratings, no_retrain, 3, every)
        results.append(
            Result(
                f"HR@10 with 3 workers exchanging every {every:,} events",
                stale.hit_rate,
                "HR@10",
                "",
                None,
                COMMAND,
                data,
                baseline=f"one worker, default retrains ({single.hit_rate:.4f})",
                baseline_value=single.hit_rate,
                note="staleness: a worker's items miss at most this many events of the others",
            )
        )
    save("scaleout", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
