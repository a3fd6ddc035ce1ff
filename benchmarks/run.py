"""`make bench`: run every benchmark, then print each goal beside its measured figure.

Each benchmark runs in its own process (a clean interpreter, its own peak memory) and writes its
figures to benchmarks/results/<name>.json; this script then reads them all back.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
BENCHMARKS = (
    "events",
    "synthetic",
    "quality",
    "presets",
    "throughput",
    "offline",
    "memory",
    "gpu",
    "scaleout",
    "workers",
    "streaming",
    "api",
)


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("events/s", "requests/s") or abs(value) >= 1000:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.4f} {unit}".strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", default=list(BENCHMARKS), help="benchmarks to run")
    parser.add_argument("--report-only", action="store_true", help="only print saved results")
    args = parser.parse_args()
    failed = []
    if not args.report_only:
        for name in args.names:
            started = time.perf_counter()
            print(f"== {name}", flush=True)
            code = subprocess.call(
                [sys.executable, str(HERE / f"bench_{name}.py")],
                env={**os.environ, "PYTHONPATH": str(HERE.parent)},
            )
            print(f"   {time.perf_counter() - started:.0f} s", flush=True)
            if code:
                failed.append(name)
    rows = []
    machine = None
    for name in args.names:
        path = HERE / "results" / f"{name}.json"
        if not path.exists():
            continue
        payload = orjson.loads(path.read_bytes())
        machine = payload["machine"]
        for result in payload["results"]:
            status = {True: "met", False: "MISSED", None: "-"}[result["passed"]]
            rows.append(
                (
                    result["name"],
                    result["goal"] or "-",
                    _format(result["value"], result["unit"]),
                    "-" if result.get("ratio") is None else f"{result['ratio']:.2f}x",
                    status,
                    result["baseline"] or result["note"],
                )
            )
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)] if rows else [0] * 5
    header = ("figure", "goal", "measured", "ratio", "status", "same-run baseline / note")
    print()
    for row in [header, *rows]:
        print(
            "  ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row[:5]))
            + "  "
            + str(row[5])
        )
    if machine:
        print(
            f"\nmachine: {machine['cpu']}, {machine['cores']} cores, GPU {machine['gpu']}, "
            f"torch {machine['torch']}, commit {machine['commit']}"
        )
    print(f"results: {HERE / 'results'}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
