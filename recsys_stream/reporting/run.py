"""A run directory: ``report.json``, ``summary.md`` and the plots, side by side."""

from __future__ import annotations

from pathlib import Path

import orjson

from recsys_stream.files import atomic_write
from recsys_stream.report import RunReport
from recsys_stream.reporting.plots import write_plots
from recsys_stream.reporting.tables import markdown_summary


def write_report(report: RunReport, out_dir: Path) -> Path:
    """Write ``report.json`` into ``out_dir`` (created); returns its path."""
    path = out_dir / "report.json"
    payload = orjson.dumps(
        report.to_dict(), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY
    )
    atomic_write(path, payload, durable=False)
    return path


def write_run(report: RunReport, out_dir: Path) -> list[Path]:
    """Write ``report.json``, ``summary.md`` and the plots into ``out_dir``; returns all paths."""
    paths = [write_report(report, out_dir)]
    summary = out_dir / "summary.md"
    summary.write_text(markdown_summary(report), encoding="utf-8")
    paths.append(summary)
    paths += write_plots(report, out_dir)
    return paths
