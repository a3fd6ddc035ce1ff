"""The synthetic MovieLens-like stream generator at ML-25M scale.

25M events over 162,541 users and 62,423 items (MovieLens 25M's numbers), timed end to end:
drawing sessions, ratings and timestamps into the ratings frame, and the item metadata.
"""

from __future__ import annotations

import time

from common import Result, save

from recsys_stream.data import generate_synthetic

COMMAND = ".venv/bin/python benchmarks/bench_synthetic.py (make bench)"
EVENTS, USERS, ITEMS = 25_000_000, 162_541, 62_423


def main() -> int:
    started = time.perf_counter()
    dataset = generate_synthetic(EVENTS, n_users=USERS, n_items=ITEMS, seed=0)
    seconds = time.perf_counter() - started
    assert len(dataset.ratings) == EVENTS
    save(
        "synthetic",
        [
            Result(
                "synthetic stream of 25M events",
                seconds,
                "s",
                "< 60 s",
                seconds < 60,
                COMMAND,
                f"generate_synthetic({EVENTS:,} events, {USERS:,} users, {ITEMS:,} items, seed 0)",
                note=f"{EVENTS / seconds:,.0f} events/s",
            )
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
