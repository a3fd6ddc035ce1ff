"""Human-readable views of a simulation report: a terminal table, a markdown summary, PNG plots.

:func:`recsys_stream.simulation.run_simulation` returns one JSON-able dict; this module turns it
into what a person reads after a run. Everything here is derived from that dict alone, so a
``report.json`` written yesterday can be re-rendered today, and a report that lacks pieces (no
baselines, no rating model, a run too short for a sliding window) still renders: the absent parts
are shown as ``-`` or left out.

Metric keys carry the cut-off (``hr@10``, ``ndcg@5``...), so every key is derived from the
report's own ``k``.

>>> report = {
...     "k": 10,
...     "models": {
...         "recent_popular": {"hr@10": 0.1, "ndcg@10": 0.05},
...         "learner": {"hr@10": 0.2, "ndcg@10": 0.1, "rmse": 0.95},
...     },
... }
>>> print(comparison_table(report))
Metric            Learner (contextual NeuMF)  RecentPopular (30 d)
------------------------------------------------------------------
HR@10                                 0.2000                0.1000
NDCG@10                               0.1000                0.0500
Precision@10                               -                     -
Recall@10                                  -                     -
F1@10                                      -                     -
HR@10 last 20%                             -                     -
HR@10 warm users                           -                     -
RMSE                                  0.9500                     -
MAE                                        -                     -
<BLANKLINE>
HR@10 as a multiple of RecentPopular (30 d): Learner (contextual NeuMF) 2.00x
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

Report = Mapping[str, Any]
"""A report as :func:`recsys_stream.simulation.run_simulation` returns it (or its JSON)."""

LEARNER = "learner"
RECENT_POPULAR = "recent_popular"
MODEL_ORDER = (LEARNER, "most_popular", RECENT_POPULAR, "cooc_knn")
"""Models in the order every table and legend shows them; unknown models follow, by name."""

DISPLAY_NAMES = {
    LEARNER: "Learner (contextual NeuMF)",
    "most_popular": "MostPopular",
    RECENT_POPULAR: "RecentPopular (30 d)",
    "cooc_knn": "Co-occurrence kNN",
}

LIKE_THRESHOLD = 3.5
"""Ratings at or above this count as a like, for the prediction and the truth (the protocol's)."""

DPI = 120

_COLOURS = {
    LEARNER: "#d62728",
    "most_popular": "#7f7f7f",
    RECENT_POPULAR: "#1f77b4",
    "cooc_knn": "#2ca02c",
}
_SPARE_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def display_name(model: str) -> str:
    """The name a reader sees for ``model``; an unknown model keeps its own name."""
    return DISPLAY_NAMES.get(model, model)


def ordered_models(names: Iterable[str]) -> list[str]:
    """``names`` in :data:`MODEL_ORDER`, unknown ones after, alphabetically, so output is stable.

    >>> ordered_models(["cooc_knn", "zeta", "learner", "alpha"])
    ['learner', 'cooc_knn', 'alpha', 'zeta']
    """
    present = set(names)
    known = [name for name in MODEL_ORDER if name in present]
    return known + sorted(present - set(MODEL_ORDER))


def comparison_table(report: Report) -> str:
    """Every model's headline figures side by side, as fixed-width text for a terminal.

    Rows are metrics and columns are models, so that adding a baseline widens the table rather
    than breaking the reader's habit of scanning one metric across. A last line gives each
    model's HR@k as a multiple of RecentPopular's (the protocol's stronger popularity baseline),
    when the report has it.
    """
    header, rows = _table(report)
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest])

    lines = [line(header), "-" * len(line(header)), *(line(row) for row in rows)]
    ratio = _ratio_line(report)
    if ratio is not None:
        lines += ["", ratio]
    return "\n".join(lines)


def markdown_summary(report: Report) -> str:
    """The run as a markdown document: what ran, the figures, and the plots next to it.

    The plot links are relative file names, so the summary belongs in the same directory as the
    PNGs that :func:`write_plots` writes; it links exactly the plots that the report has data for.
    """
    k = _k(report)
    models = _models(report)
    sections = [f"# Prequential evaluation: {report.get('dataset', 'unknown dataset')}"]
    sections.append(_run_line(report))

    header, rows = _table(report)
    table = ["## Models", _markdown_table(header, rows, align_right_from=1)]
    ratio = _ratio_line(report)
    if ratio is not None:
        table.append(ratio)
    sections.append("\n\n".join(table))

    if _has_confusion(report):
        sections.append(_confusion_section(models[LEARNER]))

    with_deciles = [name for name in ordered_models(models) if models[name].get("deciles")]
    if with_deciles:
        sections.append(f"## HR@{k} by stream decile\n\n" + _deciles_table(report, with_deciles))

    plots = _plots_for(report)
    if plots:
        links = "\n\n".join(f"![{plot.caption(report)}]({plot.file_name})" for plot in plots)
        sections.append("## Plots\n\n" + links)

    sections.append("## Protocol\n\n" + _protocol_note(report))
    return "\n\n".join(sections) + "\n"


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    """Draw every plot the report has data for into ``out_dir`` (created); returns their paths.

    - ``metrics.png``: windowed HR@k (top) and NDCG@k (bottom) of each model over the stream.
    - ``rating.png``: windowed RMSE of each rating model, its overall RMSE dashed.
    - ``loss.png``: the learner's ranking and rating loss per micro-batch, with a moving average.
    - ``confusion.png``: the learner's like/dislike confusion matrix as an annotated heatmap.
    - ``deciles.png``: HR@k per stream decile, grouped bars per model.

    Figures are rendered through the Agg canvas directly, so no display is needed and
    matplotlib's global backend is left alone.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for plot in _plots_for(report):
        figure = plot.draw(report)
        FigureCanvasAgg(figure)  # attaches itself: PNG rendering without pyplot or a display
        path = out_dir / plot.file_name
        figure.savefig(path, dpi=DPI)
        paths.append(path)
    return paths


def write_run(report: Report, out_dir: Path) -> list[Path]:
    """Write ``report.json``, ``summary.md`` and the plots into ``out_dir``; returns all paths."""
    # Imported here because the simulation imports torch, which the rendering itself never needs.
    from recsys_stream.simulation import write_report

    paths = [write_report(dict(report), out_dir)]
    summary = out_dir / "summary.md"
    summary.write_text(markdown_summary(report), encoding="utf-8")
    paths.append(summary)
    paths += write_plots(report, out_dir)
    return paths


# --- tables ---------------------------------------------------------------------------------


def _k(report: Report) -> int:
    return int(report.get("k", 10))


def _models(report: Report) -> dict[str, Mapping[str, Any]]:
    return dict(report.get("models") or {})


def _number(value: Any) -> float | None:
    """``value`` as a float, or None where it is absent or not finite (JSON turns NaN to null)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _cell(value: Any) -> str:
    number = _number(value)
    return "-" if number is None else f"{number:.4f}"


def _table(report: Report) -> tuple[list[str], list[list[str]]]:
    """The comparison as a header and rows of strings, shared by the text and markdown forms."""
    k = _k(report)
    models = _models(report)
    names = ordered_models(models)
    rows = [
        (f"HR@{k}", f"hr@{k}"),
        (f"NDCG@{k}", f"ndcg@{k}"),
        (f"Precision@{k}", f"precision@{k}"),
        (f"Recall@{k}", f"recall@{k}"),
        (f"F1@{k}", f"f1@{k}"),
        (f"HR@{k} last 20%", f"hr@{k}_last20"),
        (f"HR@{k} warm users", f"hr@{k}_warm"),
        ("RMSE", "rmse"),
        ("MAE", "mae"),
    ]
    header = ["Metric", *(display_name(name) for name in names)]
    body = [[label, *(_cell(models[name].get(key)) for name in names)] for label, key in rows]
    return header, body


def _ratio_line(report: Report) -> str | None:
    """Each other model's HR@k over RecentPopular's; None without a non-zero RecentPopular."""
    k = _k(report)
    models = _models(report)
    reference = _number(models.get(RECENT_POPULAR, {}).get(f"hr@{k}"))
    if not reference:
        return None
    ratios = []
    for name in ordered_models(models):
        hit_rate = _number(models[name].get(f"hr@{k}"))
        if name != RECENT_POPULAR and hit_rate is not None:
            ratios.append(f"{display_name(name)} {hit_rate / reference:.2f}x")
    if not ratios:
        return None
    return f"HR@{k} as a multiple of {display_name(RECENT_POPULAR)}: " + ", ".join(ratios)


def _markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int
) -> str:
    """A GitHub markdown table; columns from ``align_right_from`` on are numbers, right-aligned."""
    rule = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def _run_line(report: Report) -> str:
    """One line saying what ran, leaving out whatever the report does not record."""
    parts = []
    if "events" in report:
        relevant = report.get("relevant_events")
        extra = f" ({relevant:,} relevant)" if relevant is not None else ""
        parts.append(f"{report['events']:,} events{extra}")
    for key, unit in (("users", "users"), ("items", "items")):
        if key in report:
            parts.append(f"{report[key]:,} {unit}")
    for key, label in (("batch_size", "batch size"), ("k", "k =")):
        if key in report:
            parts.append(f"{label} {report[key]}")
    if "device" in report:
        parts.append(f"device `{report['device']}`")
    if "wall_seconds" in report:
        speed = report.get("events_per_second")
        extra = f" ({speed:,.0f} events/s)" if speed is not None else ""
        parts.append(f"{report['wall_seconds']:,.1f} s wall{extra}")
    for key, label in (
        ("model_version", "model version"),
        ("retrains_completed", "retrains"),
        ("dead_letters", "dead letters"),
    ):
        if key in report:
            parts.append(f"{label} {report[key]}")
    return " · ".join(parts)


def _confusion_section(figures: Mapping[str, Any]) -> str:
    confusion = figures["confusion"]
    rows = [
        ["**predicted like**", f"{confusion['tp']:,}", f"{confusion['fp']:,}"],
        ["**predicted dislike**", f"{confusion['fn']:,}", f"{confusion['tn']:,}"],
    ]
    table = _markdown_table(["", "actual like", "actual dislike"], rows, align_right_from=1)
    scores = ", ".join(
        f"{label} {_cell(figures.get(key))}"
        for label, key in (
            ("accuracy", "like_accuracy"),
            ("precision", "like_precision"),
            ("recall", "like_recall"),
        )
    )
    title = f"## {display_name(LEARNER)}: like/dislike (rating ≥ {LIKE_THRESHOLD})"
    return f"{title}\n\n{table}\n\nLike {scores}."


def _deciles_table(report: Report, names: Sequence[str]) -> str:
    """HR@k per decile, a column per model; the relevant-event counts are the first model's."""
    k = _k(report)
    models = _models(report)
    by_model = {name: {row["decile"]: row for row in models[name]["deciles"]} for name in names}
    deciles = sorted({decile for rows in by_model.values() for decile in rows})
    header = ["Decile", "Relevant events", *(display_name(name) for name in names)]
    rows = []
    for decile in deciles:
        counts = [by_model[name][decile]["relevant"] for name in names if decile in by_model[name]]
        cells = [_cell(by_model[name].get(decile, {}).get(f"hr@{k}")) for name in names]
        rows.append([str(decile), f"{counts[0]:,}", *cells])
    return _markdown_table(header, rows, align_right_from=1)


def _protocol_note(report: Report) -> str:
    batch = report.get("batch_size")
    learner = (
        f"The learner is scored and then trained in micro-batches of {batch} events, each batch "
        "ranked with the parameters from before it. "
        if batch is not None
        else ""
    )
    baselines = (
        f"The baselines are {report.get('baseline_batching', 'exact per event')}."
        if set(_models(report)) - {LEARNER}
        else ""
    )
    return (
        "All figures follow the prequential protocol (test-then-train): every event is first used "
        "to evaluate each model, which has not seen it yet, and only then to train it. "
        f"{learner}{baselines}"
    ).strip()


# --- plots ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plot:
    """One PNG: when the report has data for it, how to draw it, and how the summary names it."""

    file_name: str
    title: str
    """Caption for the summary; ``{k}`` is replaced by the report's cut-off."""
    applies: Callable[[Report], bool]
    draw: Callable[[Report], Figure]

    def caption(self, report: Report) -> str:
        return self.title.format(k=_k(report))


def _values(values: Any) -> npt.NDArray[np.float64]:
    """A JSON list of numbers as floats, nulls (NaN written to JSON) becoming NaN."""
    return np.asarray([np.nan if value is None else value for value in values or []], dtype=float)


def _on_dataset(report: Report) -> str:
    """``", <dataset>"`` for a plot title, or nothing for a report that does not name it."""
    dataset = report.get("dataset")
    return f", {dataset}" if dataset else ""


def _colour(name: str, names: Sequence[str]) -> str:
    if name in _COLOURS:
        return _COLOURS[name]
    spare = [other for other in names if other not in _COLOURS]
    return _SPARE_COLOURS[spare.index(name) % len(_SPARE_COLOURS)]


def _line_style(name: str) -> dict[str, Any]:
    """The learner drawn bold and on top; the baselines thinner, so the comparison reads at once."""
    if name == LEARNER:
        return {"linewidth": 2.4, "zorder": 3}
    return {"linewidth": 1.4, "alpha": 0.85, "zorder": 2}


def _events_axis(axes: Axes) -> None:
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.grid(alpha=0.3)


def _has_ranking_series(report: Report) -> bool:
    series = report.get("series") or {}
    return bool(series.get("event_index")) and bool(series.get("models"))


def _draw_metrics(report: Report) -> Figure:
    k = _k(report)
    series = report["series"]
    x = _values(series["event_index"])
    names = ordered_models(series["models"])
    figure = Figure(figsize=(10, 7.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    for axes, metric, key in ((top, f"HR@{k}", f"hr@{k}"), (bottom, f"NDCG@{k}", f"ndcg@{k}")):
        for name in names:
            y = _values(series["models"][name].get(key))
            if len(y) == len(x):
                axes.plot(
                    x, y, label=display_name(name), color=_colour(name, names), **_line_style(name)
                )
        axes.set_ylabel(f"windowed {metric}")
        axes.set_ylim(bottom=0)
        axes.set_title(f"{metric} over the stream")
        _events_axis(axes)
    top.legend(loc="best")
    bottom.set_xlabel("events processed")
    window = series.get("window")
    about = f" (sliding window of the last {window:,} relevant events)" if window else ""
    figure.suptitle(f"Prequential ranking quality{_on_dataset(report)}{about}")
    return figure


def _has_rating_series(report: Report) -> bool:
    rating = (report.get("series") or {}).get("rating") or {}
    return bool(rating.get("event_index")) and bool(rating.get("models"))


def _draw_rating(report: Report) -> Figure:
    rating = report["series"]["rating"]
    x = _values(rating["event_index"])
    names = ordered_models(rating["models"])
    models = _models(report)
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.subplots()
    for name in names:
        colour = _colour(name, names)
        label = display_name(name)
        y = _values(rating["models"][name].get("rmse"))
        if len(y) != len(x):
            continue
        axes.plot(
            x,
            y,
            color=colour,
            label=f"{label}, windowed",
            **_line_style(name),
        )
        overall = _number(models.get(name, {}).get("rmse"))
        if overall is not None:
            axes.axhline(
                overall,
                color=colour,
                linestyle="--",
                linewidth=1.2,
                label=f"{label}, overall {overall:.3f}",
            )
    window = rating.get("window")
    about = f" (sliding window of the last {window:,} rated events)" if window else ""
    axes.set_title(f"Prequential rating error{_on_dataset(report)}{about}")
    axes.set_xlabel("events processed")
    axes.set_ylabel("RMSE")
    axes.legend(loc="best")
    _events_axis(axes)
    return figure


_LOSSES = (("ranking_loss", "ranking loss"), ("rating_loss", "rating loss"))


def _finite_losses(report: Report) -> list[tuple[str, npt.NDArray[np.float64]]]:
    """The loss series that have at least one finite value, with their labels."""
    losses = report.get("training_loss") or {}
    found = []
    for key, label in _LOSSES:
        values = _values(losses.get(key))
        if len(values) == len(losses.get("event_index") or []) and np.isfinite(values).any():
            found.append((label, values))
    return found


def _moving_average(values: npt.NDArray[np.float64], window: int) -> npt.NDArray[np.float64]:
    """Trailing mean over ``window`` points, skipping NaN (a batch with nothing to learn).

    >>> _moving_average(np.array([1.0, np.nan, 3.0, 5.0]), 2).tolist()
    [1.0, 1.0, 3.0, 4.0]
    """
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - window, 0)
    n = counts[ends] - counts[starts]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[ends] - sums[starts]) / n, np.nan)


def _draw_loss(report: Report) -> Figure:
    x = _values(report["training_loss"]["event_index"])
    losses = _finite_losses(report)
    window = max(1, min(25, len(x) // 10))
    figure = Figure(figsize=(10, 3.2 * len(losses) + 1), layout="constrained")
    panels = figure.subplots(len(losses), 1, sharex=True, squeeze=False)[:, 0]
    for axes, (label, values) in zip(panels, losses, strict=True):
        # Batches without a loss (NaN) are skipped rather than drawn as gaps in the faint line.
        finite = np.isfinite(values)
        axes.plot(
            x[finite],
            values[finite],
            color="#d62728",
            alpha=0.25,
            linewidth=1,
            label="per micro-batch",
        )
        smooth = _moving_average(values, window)
        axes.plot(
            x, smooth, color="#d62728", linewidth=2.2, label=f"moving average ({window} batches)"
        )
        axes.set_ylabel(label)
        axes.set_title(label.capitalize())
        axes.legend(loc="best")
        _events_axis(axes)
    panels[-1].set_xlabel("events processed")
    batch = report.get("batch_size")
    about = f" (micro-batches of {batch} events)" if batch else ""
    figure.suptitle(f"{display_name(LEARNER)} training loss{about}")
    return figure


def _has_confusion(report: Report) -> bool:
    return _models(report).get(LEARNER, {}).get("confusion") is not None


def _draw_confusion(report: Report) -> Figure:
    figures = _models(report)[LEARNER]
    confusion = figures["confusion"]
    # Rows are the prediction and columns the truth, as in the summary's table.
    counts = np.array(
        [[confusion["tp"], confusion["fp"]], [confusion["fn"], confusion["tn"]]], dtype=float
    )
    total = counts.sum()
    figure = Figure(figsize=(5.8, 5), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", vmin=0)
    for row in range(2):
        for column in range(2):
            count = counts[row, column]
            share = f"\n{count / total:.1%}" if total else ""
            dark = count > counts.max() / 2
            axes.text(
                column,
                row,
                f"{count:,.0f}{share}",
                ha="center",
                va="center",
                fontsize=13,
                color="white" if dark else "black",
            )
    axes.set_xticks([0, 1], ["like", "dislike"])
    axes.set_yticks([0, 1], ["like", "dislike"])
    axes.set_xlabel("actual")
    axes.set_ylabel("predicted")
    accuracy = _number(figures.get("like_accuracy"))
    about = f"\naccuracy {accuracy:.3f}" if accuracy is not None else ""
    axes.set_title(f"{display_name(LEARNER)}: like = rating ≥ {LIKE_THRESHOLD}{about}")
    figure.colorbar(image, ax=axes, label="events", format=StrMethodFormatter("{x:,.0f}"))
    return figure


def _has_deciles(report: Report) -> bool:
    return any(figures.get("deciles") for figures in _models(report).values())


def _draw_deciles(report: Report) -> Figure:
    k = _k(report)
    models = _models(report)
    names = [name for name in ordered_models(models) if models[name].get("deciles")]
    width = 0.8 / len(names)
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    axes = figure.subplots()
    deciles: set[int] = set()
    for position, name in enumerate(names):
        rows = models[name]["deciles"]
        deciles.update(row["decile"] for row in rows)
        x = np.array([row["decile"] for row in rows], dtype=float)
        offset = (position - (len(names) - 1) / 2) * width
        hit_rates = _values([row.get(f"hr@{k}") for row in rows])
        axes.bar(x + offset, hit_rates, width, label=display_name(name), color=_colour(name, names))
    axes.set_xticks(sorted(deciles))
    axes.set_xlabel("stream decile (1 = first tenth of the events)")
    axes.set_ylabel(f"HR@{k}")
    axes.set_title(f"HR@{k} per tenth of the stream{_on_dataset(report)}")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="best")
    return figure


_PLOTS = (
    _Plot(
        "metrics.png",
        "Windowed HR@{k} and NDCG@{k} over the stream",
        _has_ranking_series,
        _draw_metrics,
    ),
    _Plot("rating.png", "Windowed RMSE over the stream", _has_rating_series, _draw_rating),
    _Plot(
        "loss.png",
        "Training loss per micro-batch",
        lambda report: bool(_finite_losses(report)),
        _draw_loss,
    ),
    _Plot("confusion.png", "Like/dislike confusion matrix", _has_confusion, _draw_confusion),
    _Plot("deciles.png", "HR@{k} per stream decile", _has_deciles, _draw_deciles),
)


def _plots_for(report: Report) -> list[_Plot]:
    return [plot for plot in _PLOTS if plot.applies(report)]
