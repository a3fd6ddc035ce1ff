"""Scale-out measured: the trainer as 1, 2 and 3 worker processes of one group, through Kafka.

MovieLens 100K is replayed at full speed into a 6-partition topic once every worker of the run
has its partitions; the figure is the time from the replay's start until every worker's model
holds every event (``events_held``) and knows each partition's end: the group learned the whole
stream once, as one model. All runs on this machine, one after the other, in one process tree:

- the baseline: one trainer as deployed by default (no scale-out), retrains off;
- one worker of a group (the exchange's machinery with nobody to exchange with);
- 2 and 3 workers: events/s against the baseline, HR@10 of the group (the leader's figures,
  which sum every worker's prequential records) against the baseline's, and the staleness of
  updates (publication to application on another worker, p50/p99 over the run);
- live (1,500 events/s): the same HR@10 comparison, retrains off, then with full retrains on
  the default schedule (one trainer's own; the group's, refitted by its leader and adopted by
  every worker).

Each worker is two processes (the Faust consumer and its learner). On a 2-core machine 2 or 3
workers share the cores that one worker already uses, so this measures the protocol's cost and
its correctness at speed, not the parallel speed-up: bench_scaleout models that from the same
costs. On a machine with cores for each worker, the same command measures the speed-up.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import NO_ML_100K, Result, ml_100k_root, save, save_skipped

from recsys_stream.data import load_dataset
from recsys_stream.settings import KafkaSettings
from replay.service import ReplayConfig, Replayer
from scripts.test_services import provide_kafka
from scripts.trainer_process import TrainerProcess

COMMAND = ".venv/bin/python benchmarks/bench_workers.py (make bench)"
DATA = "MovieLens 100K, 100,000 events, 6 partitions, replayed at full speed"
PARTITIONS = 6
NO_RETRAINS = str(10**12)
"""RECSYS_LEARNER__RETRAIN__EVERY_EVENTS for the baseline: never (the setting takes no null)."""
RETRAIN_EVERY = 50_000
"""The default schedule of full retrains (``RetrainConfig.every_events``)."""
RETRAINS = {"RECSYS_LEARNER__RETRAIN__EVERY_EVENTS": str(RETRAIN_EVERY)}
TIMEOUT_S = 1_800.0
LIVE_RATE = 1_500.0
"""Events/s of the live runs: below what 3 workers learn on 2 cores (~2,700 events/s)."""


def _start(
    servers: str, topic: str, folder: Path, name: str, scale_out: bool, settings: dict[str, str]
) -> TrainerProcess:
    workdir = folder / name
    workdir.mkdir(parents=True)
    trainer = TrainerProcess(
        servers,
        topic,
        workdir,
        **{
            "RECSYS_TRAINER__SCALE_OUT": "true" if scale_out else "false",
            "RECSYS_TRAINER__WORKER_NAME": name,
            "RECSYS_TRAINER__CHECKPOINT_PATH": str(folder / "checkpoints" / "trainer.ckpt"),
            "RECSYS_KAFKA__UPDATES_TOPIC": f"{topic}.updates",
            "RECSYS_KAFKA__PARTITIONS": str(PARTITIONS),
            "RECSYS_LEARNER__RETRAIN__EVERY_EVENTS": NO_RETRAINS,
            "RECSYS_TRAINER__HTTP_PORT": "0",
            "RECSYS_TRAINER__SINK": "memory",
            **settings,
        },
    )
    trainer.start()
    return trainer


def _run(
    servers: str,
    ratings: pd.DataFrame,
    root: Path,
    workers: int,
    scale_out: bool,
    rate: float | None = None,
    settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    topic = f"bench-workers-{workers}-{uuid.uuid4().hex[:6]}"
    folder = root / topic
    started = [
        _start(servers, topic, folder, f"w{i}", scale_out, settings or {}) for i in range(workers)
    ]
    total = len(ratings)
    try:
        if scale_out:
            for trainer in started:
                trainer.wait_for(lambda s: bool(s["group"] and s["group"]["assigned"]), 600)
        else:
            started[0].wait_for(lambda s: True, 600)
        kafka = KafkaSettings(bootstrap_servers=servers, topic=topic, partitions=PARTITIONS)
        began = time.perf_counter()
        Replayer(ReplayConfig(kafka=kafka, rate=rate), "bench").run(ratings)

        def whole(status: dict[str, Any]) -> bool:
            held = status["group"]["events_held"] if scale_out else status["events_learned"]
            return bool(held >= total)

        finals = [trainer.wait_for(whole, TIMEOUT_S) for trainer in started]
        seconds = time.perf_counter() - began
        # The leader's figures once the stream went quiet (published at the next tick).
        leader = next(
            (
                t
                for t, s in zip(started, finals, strict=True)
                if not scale_out or s["group"]["leader"]
            )
        )
        final = leader.wait_for(lambda s: s["report_events"] == total, 120)
    finally:
        for trainer in started:
            trainer.stop()
    staleness = [
        (s["update_staleness_p50_s"], s["update_staleness_p99_s"])
        for s in finals
        if s.get("update_staleness_p50_s") is not None
    ]
    return {
        "workers": workers,
        "scale_out": scale_out,
        "rate": rate,
        "seconds": seconds,
        "events_per_second": total / seconds,
        "hit_rate": final["hit_rates"]["learner"],
        "events_held": [
            s["group"]["events_held"] if scale_out else s["events_learned"] for s in finals
        ],
        "learned_here": [
            s["group"]["events_learned_here"] if scale_out else s["events_learned"] for s in finals
        ],
        "staleness_p50_s": float(np.median([p50 for p50, _ in staleness])) if staleness else None,
        "staleness_p99_s": max((p99 for _, p99 in staleness), default=None),
        "updates_published": [s["group"]["updates_published"] for s in finals] if scale_out else [],
        "model_version": final["model_version"],
        "events_relearned": sum(s["group"]["events_relearned"] for s in finals) if scale_out else 0,
        "aligned_s": [s["group"]["aligned_s"] for s in finals] if scale_out else [],
    }


def _quality(run: dict[str, Any], single: dict[str, Any], how: str) -> Result:
    workers = run["workers"]
    return Result(
        f"HR@10 of {workers} workers, {how} (the group's figures)",
        run["hit_rate"],
        "",
        ">= 0.95x one trainer",
        run["hit_rate"] >= 0.95 * single["hit_rate"],
        COMMAND,
        DATA,
        baseline=f"one trainer, {how}: {single['hit_rate']:.4f}",
        baseline_value=single["hit_rate"],
    )


def _staleness(run: dict[str, Any], how: str) -> Result:
    p50 = run["staleness_p50_s"]
    return Result(
        f"update staleness, {run['workers']} workers, {how}, p99 (published -> applied)",
        run["staleness_p99_s"],
        "s",
        "bounded and reported",
        None,
        COMMAND,
        DATA,
        note=f"p50 {p50 if p50 is not None else float('nan'):.3f} s; in events: "
        "exchange_every_events = 1,000 per worker",
        extra={"p50_s": p50},
    )


def main() -> int:
    root = ml_100k_root()
    if root is None:
        return save_skipped(
            "workers", Result("workers", None, "events/s", "", None, COMMAND, DATA), NO_ML_100K
        )
    ratings = load_dataset("ml-100k", data_dir=root, allow_download=False).ratings
    total = len(ratings)
    with provide_kafka() as servers, tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        single = _run(servers, ratings, folder, 1, scale_out=False)
        runs = {n: _run(servers, ratings, folder, n, scale_out=True) for n in (1, 2, 3)}
        # Live: the stream at a pace every group here keeps up with (as a service sees it),
        # rather than a backlog that each worker races through at its own speed.
        single_live = _run(servers, ratings, folder, 1, scale_out=False, rate=LIVE_RATE)
        live = {
            n: _run(servers, ratings, folder, n, scale_out=True, rate=LIVE_RATE) for n in (2, 3)
        }
        # Full retrains on their default schedule: one trainer's, and the group's (refitted
        # by its leader, adopted by every worker).
        single_retrains = _run(
            servers, ratings, folder, 1, scale_out=False, rate=LIVE_RATE, settings=RETRAINS
        )
        group_retrains = {
            n: _run(servers, ratings, folder, n, scale_out=True, rate=LIVE_RATE, settings=RETRAINS)
            for n in (2, 3)
        }
    cores = os.cpu_count() or 1
    results = [
        Result(
            "one trainer (no scale-out), whole stream learned",
            single["events_per_second"],
            "events/s",
            "",
            None,
            COMMAND,
            DATA,
            note=f"HR@10 {single['hit_rate']:.4f}; retrains off",
            extra=single,
        )
    ]
    for workers, run in runs.items():
        exact = all(held == total for held in run["events_held"]) and (
            sum(run["learned_here"]) == total
        )
        speed_goal = ">= 1.7x one trainer (each worker on its own cores)" if workers == 2 else ""
        own_cores = cores >= 2 * workers * 2  # each worker: a Faust and a learner process
        results.append(
            Result(
                f"{workers} worker{'s' if workers > 1 else ''} of a group, whole stream learned",
                run["events_per_second"],
                "events/s",
                speed_goal,
                (run["events_per_second"] >= 1.7 * single["events_per_second"])
                if workers == 2 and own_cores
                else None,
                COMMAND,
                DATA,
                baseline=f"one trainer {single['events_per_second']:,.0f} events/s",
                baseline_value=single["events_per_second"],
                note=(
                    f"{cores} cores for {workers * 2} processes"
                    + ("" if own_cores else ": not a parallel speed-up measurement")
                    + f"; every event held once by every worker: {exact}"
                ),
                extra=run,
            )
        )
        if workers > 1:
            results.append(_quality(run, single, "backlog"))
            results.append(_staleness(run, "backlog"))
    for run in live.values():
        results.append(_quality(run, single_live, f"live at {LIVE_RATE:,.0f} events/s"))
        results.append(_staleness(run, f"live at {LIVE_RATE:,.0f} events/s"))
    how = f"live at {LIVE_RATE:,.0f} events/s, full retrains every {RETRAIN_EVERY:,} events"
    for run in group_retrains.values():
        result = _quality(run, single_retrains, how)
        result.note = (
            f"model version {run['model_version']} (one trainer: "
            f"{single_retrains['model_version']}); {run['events_relearned']:,} events learned "
            "again in the refits by their users' workers"
        )
        results.append(result)
    save("workers", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
