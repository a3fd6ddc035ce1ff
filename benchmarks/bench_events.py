"""The wire format: JSON (orjson, the choice) against a compact binary layout.

The binary candidate packs the four required fields in 24 bytes (two int32 ids padded, a
float32 rating, a float64 timestamp). Both are measured encoding and decoding-with-validation
the first 100,000 events of a synthetic stream, in the same run.
"""

from __future__ import annotations

import struct
import time

from common import Result, save

from recsys_stream.data import generate_synthetic
from recsys_stream.events import RatingEvent, decode, encode

COMMAND = ".venv/bin/python benchmarks/bench_events.py (make bench)"
DATA = "synthetic stream, 100,000 events, seed 1"
LAYOUT = struct.Struct("<iifd")


def _binary_decode(payload: bytes) -> RatingEvent:
    user, item, rating, timestamp = LAYOUT.unpack(payload)
    return RatingEvent(user, item, rating, timestamp)


def main() -> int:
    frame = generate_synthetic(100_000, n_users=1_000, n_items=2_000, seed=1).ratings
    events = [
        RatingEvent(int(u), int(i), float(r), int(t))
        for u, i, r, t in zip(
            frame.user_id, frame.item_id, frame.rating, frame.timestamp, strict=True
        )
    ]
    timings = {}
    for name, enc, dec in (
        ("json", encode, decode),
        (
            "binary",
            lambda e: LAYOUT.pack(e.user_id, e.item_id, e.rating, e.timestamp),
            _binary_decode,
        ),
    ):
        started = time.perf_counter()
        payloads = [enc(event) for event in events]
        encoded = time.perf_counter() - started
        started = time.perf_counter()
        for payload in payloads:
            dec(payload)
        decoded = time.perf_counter() - started
        size = sum(len(p) for p in payloads) / len(payloads)
        timings[name] = (len(events) / encoded, len(events) / decoded, size)
    json, binary = timings["json"], timings["binary"]
    save(
        "events",
        [
            Result(
                "decode + validate, JSON (orjson)",
                json[1],
                "events/s",
                "",
                None,
                COMMAND,
                DATA,
                baseline=f"{json[1] / binary[1]:.2f}x the binary layout ({binary[1]:,.0f}/s)",
                note=f"{json[2]:.0f} bytes per event vs {binary[2]:.0f}",
            ),
            Result(
                "encode, JSON (orjson)",
                json[0],
                "events/s",
                "",
                None,
                COMMAND,
                DATA,
                baseline=f"{json[0] / binary[0]:.2f}x the binary layout ({binary[0]:,.0f}/s)",
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
