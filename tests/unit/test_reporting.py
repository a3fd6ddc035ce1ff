"""The report renderers: text table, markdown summary and plots, on synthetic reports.

The reports are built here rather than read from a run, so the tests stay fast; they have what
:func:`recsys_stream.stream.build_report` produces: models' figures at ``k``, a sliding-window
series, a rating series and the learner's per-micro-batch losses.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from recsys_stream.report import RunReport
from recsys_stream.reporting import (
    comparison_table,
    display_name,
    markdown_summary,
    write_plots,
    write_run,
)
from tests.reports import make_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = {"metrics.png", "rating.png", "loss.png", "confusion.png", "deciles.png"}


def test_table_lists_every_metric_and_orders_models() -> None:
    report = make_report(models=("zeta", "cooc_knn", "recent_popular", "learner", "most_popular"))
    lines = comparison_table(report).splitlines()
    header = lines[0]
    names = ["learner", "most_popular", "recent_popular", "cooc_knn", "zeta"]
    positions = [header.index(display_name(name)) for name in names]
    assert positions == sorted(positions)
    assert display_name("learner") == "Learner (contextual NeuMF)"
    labels = [line.split("  ")[0].strip() for line in lines[2:11]]
    assert labels == [
        "HR@10",
        "NDCG@10",
        "Precision@10",
        "Recall@10",
        "F1@10",
        "HR@10 last 20%",
        "HR@10 warm users",
        "RMSE",
        "MAE",
    ]
    assert lines[2].split()[1:] == ["0.2000", "0.1000", "0.0800", "0.1600", "0.0500"]
    assert lines[9].split()[1:] == ["0.9500", "-", "-", "-", "-"]  # only the learner rates


def test_table_ends_with_hit_rate_ratios_to_recent_popular() -> None:
    last = comparison_table(make_report()).splitlines()[-1]
    assert last == (
        "HR@10 as a multiple of RecentPopular (30 d): Learner (contextual NeuMF) 2.50x, "
        "MostPopular 1.25x, Co-occurrence kNN 2.00x"
    )


def test_without_baselines_there_is_no_ratio_line_nor_baseline_note() -> None:
    report = make_report(models=("learner",))
    table = comparison_table(report)
    assert "multiple" not in table
    assert table.splitlines()[2].split() == ["HR@10", "0.2000"]
    assert "baselines" not in markdown_summary(report)


def test_key_names_follow_k() -> None:
    report = make_report(k=5)
    table = comparison_table(report)
    assert "HR@5 last 20%" in table
    assert "@10" not in table
    assert "0.2000" in table
    summary = markdown_summary(report)
    assert "## HR@5 by stream decile" in summary
    assert "@10" not in summary


def test_summary_has_run_line_tables_confusion_and_plot_links() -> None:
    summary = markdown_summary(make_report())
    assert summary.startswith("# Prequential evaluation: synthetic-42\n")
    for fragment in ("5,000 events (2,800 relevant)", "batch size 256", "model version 3"):
        assert fragment in summary
    assert "| HR@10 | 0.2000 | 0.1000 | 0.0800 | 0.1600 |" in summary
    assert "| **predicted like** | 1,234 | 321 |" in summary
    assert "| **predicted dislike** | 222 | 567 |" in summary
    assert "accuracy 0.7654, precision 0.7935, recall 0.8475" in summary
    assert "| 10 | 100 | 0.2000 | 0.1000 | 0.0800 | 0.1600 |" in summary
    for name in ALL_PLOTS:
        assert f"]({name})" in summary
    assert "prequential protocol (test-then-train)" in summary
    assert "micro-batches of 256 events" in summary
    assert "exact per event" in summary


def test_write_run_writes_report_summary_and_valid_pngs(tmp_path: Path) -> None:
    report = make_report()
    paths = write_run(report, tmp_path / "run")
    assert {path.name for path in paths} == {"report.json", "summary.md"} | ALL_PLOTS
    assert all(path.parent == tmp_path / "run" and path.is_file() for path in paths)
    for path in paths:
        if path.suffix == ".png":
            data = path.read_bytes()
            assert data.startswith(PNG_MAGIC), path.name
            assert len(data) > 10_000, path.name
    reloaded = json.loads((tmp_path / "run" / "report.json").read_text())
    assert reloaded["models"]["learner"]["hr@10"] == pytest.approx(0.2)
    # NaN losses come back from JSON as null: the saved report must render just the same.
    again = write_plots(RunReport.from_dict(reloaded), tmp_path / "again")
    assert {path.name for path in again} == ALL_PLOTS


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({"models": ("learner",)}, ALL_PLOTS, id="no-baselines"),
        pytest.param(
            {"rating": False}, ALL_PLOTS - {"rating.png", "confusion.png"}, id="no-rating"
        ),
        pytest.param({"series": False}, ALL_PLOTS - {"metrics.png", "rating.png"}, id="no-series"),
        pytest.param({"loss": False}, ALL_PLOTS - {"loss.png"}, id="no-loss"),
        pytest.param(
            {"models": ("most_popular",), "series": False, "loss": False},
            {"deciles.png"},
            id="one-baseline-only",
        ),
    ],
)
def test_missing_pieces_are_left_out(
    tmp_path: Path, options: dict[str, Any], expected: set[str]
) -> None:
    report = make_report(**options)
    written = {path.name for path in write_plots(report, tmp_path)}
    assert written == expected
    summary = markdown_summary(report)
    for name in ALL_PLOTS:
        assert (f"]({name})" in summary) == (name in expected), name
    assert ("predicted like" in summary) == ("confusion.png" in expected)
    assert comparison_table(report)


def test_loss_plot_needs_a_finite_value(tmp_path: Path) -> None:
    full = make_report(models=(), series=False)
    losses = full.training_loss
    losses.ranking_loss[:] = [math.nan] * 19
    assert [path.name for path in write_plots(full, tmp_path / "rating-only")] == ["loss.png"]
    saved = full.to_dict()
    saved["training_loss"]["rating_loss"] = [None] * 19  # NaN as it comes back from JSON
    assert write_plots(RunReport.from_dict(saved), tmp_path / "none") == []


def test_empty_report_renders() -> None:
    report = make_report(models=(), series=False, loss=False)
    assert comparison_table(report).startswith("Metric")
    summary = markdown_summary(report)
    assert "## Plots" not in summary
    assert "prequential protocol (test-then-train)" in summary
