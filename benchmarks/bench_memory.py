"""Memory at MovieLens 25M scale (162k users, 62k items, 64 dimensions).

1. The learner's state: a synthetic stream of 25M events with ML-25M's numbers of users and
   items is folded into the learner's log-derived state (histories, statistics, popularity) and
   its tables are grown to every user and item; no gradient step is needed to size the state,
   so this takes minutes, not hours. The figure is the bytes of every array and tensor of the
   learner's state, and the growth of the process's resident memory while building it.
2. The embedded event log of the same stream, as ``recsys-stream simulate --synthetic`` fills
   it before learning: the growth of the process's resident memory, per event.
"""

from __future__ import annotations

import resource
import time
from typing import Any

import numpy as np
import torch
from common import Result, save

from recsys_stream.data import generate_synthetic
from recsys_stream.events import EventBatch, InMemoryEventLog
from recsys_stream.learner.online import OnlineLearner
from recsys_stream.settings import LearnerConfig
from recsys_stream.stream import fill_log

COMMAND = ".venv/bin/python benchmarks/bench_memory.py (make bench)"
USERS, ITEMS, EVENTS = 162_541, 62_423, 25_000_000


def _bytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_bytes(v) for v in value)
    return 0


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    started = time.perf_counter()
    dataset = generate_synthetic(EVENTS, n_users=USERS, n_items=ITEMS, seed=25)
    frame = dataset.ratings
    columns = [frame[c].to_numpy() for c in ("user_id", "item_id", "rating", "timestamp")]
    del frame
    rss_before = _rss_mib()
    learner = OnlineLearner(LearnerConfig(device="cpu"))
    features = learner.features
    for start in range(0, EVENTS, 1_000_000):
        batch = EventBatch.from_arrays(*(c[start : start + 1_000_000] for c in columns))
        users, items = features.register(batch)
        features.update(batch, users, items)
    learner.model.ensure_rows(len(features.users), features.items.ids)
    # Every table and optimiser state in use, at full size (capacity included).
    model = learner.model
    state_bytes = (
        sum(
            _bytes(t.weight) + _bytes(t.accumulator)
            for t in (model.item_embedding, model.item_bias, model.user_embedding)
        )
        + sum(_bytes(p) for p in model.dense.parameters()) * 3
        + features.sequences.nbytes
        + _bytes(features.statistics.state_dict())
        + sum(_bytes(counts.state_dict()) for counts in features.popularities)
        + _bytes(features.users.state_dict())
        + _bytes(features.items.state_dict())
        + learner.config.replay_capacity * (8 * 2 + 4 * 2 + (8 + 4) * model.config.context_length)
    )
    rss_growth = _rss_mib() - rss_before
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gib = state_bytes / 2**30
    rss_before_log = _rss_mib()
    log_started = time.perf_counter()
    log = InMemoryEventLog(partitions=1)
    fill_log(dataset, log)
    log_seconds = time.perf_counter() - log_started
    log_mib = _rss_mib() - rss_before_log
    del log, dataset
    data = (
        f"synthetic stream, {EVENTS:,} events, {len(features.users):,} users, "
        f"{len(features.items):,} items, seed 25"
    )
    save(
        "memory",
        [
            Result(
                "learner state at ML-25M scale (CPU, 64 dimensions)",
                gib * 1024,
                "MiB",
                "< 1024 MiB",
                gib < 1.0,
                COMMAND,
                data,
                baseline=f"process RSS grew {rss_growth:,.0f} MiB while building it "
                f"(peak RSS {peak:,.0f} MiB including the 25M-event frame)",
                note=f"built in {time.perf_counter() - started:.0f} s",
            ),
            Result(
                "embedded event log at ML-25M scale (simulate --synthetic)",
                log_mib,
                "MiB",
                "",
                None,
                COMMAND,
                data,
                note=f"process RSS growth while filling it: {log_mib * 2**20 / EVENTS:.0f} bytes "
                f"an event; filled in {log_seconds:.0f} s",
                extra={"bytes_per_event": log_mib * 2**20 / EVENTS, "seconds": log_seconds},
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
