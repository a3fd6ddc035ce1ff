"""A run's report as PNG plots: windowed metrics, rating error, training loss, confusion matrix,
HR@k by decile.

Figures are rendered through the Agg canvas directly, so no display is needed and matplotlib's
global backend is left alone. A plot is drawn only when the report has data for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter

from recsys_stream.report import RunReport
from recsys_stream.reporting.names import LEARNER, colour, display_name, ordered_models

DPI = 120


@dataclass(frozen=True)
class Plot:
    """One PNG: when the report has data for it, how to draw it, and how the summary names it."""

    file_name: str
    title: str
    """Caption for the summary; ``{k}`` is replaced by the report's cut-off."""
    applies: Callable[[RunReport], bool]
    draw: Callable[[RunReport], Figure]

    def caption(self, report: RunReport) -> str:
        return self.title.format(k=report.prequential.k)


def plots_for(report: RunReport) -> list[Plot]:
    """The plots ``report`` has data for, in the order the summary shows them."""
    return [plot for plot in _PLOTS if plot.applies(report)]


def write_plots(report: RunReport, out_dir: Path) -> list[Path]:
    """Draw every plot the report has data for into ``out_dir`` (created); returns their paths.

    - ``metrics.png``: windowed HR@k (top) and NDCG@k (bottom) of each model over the stream.
    - ``rating.png``: windowed RMSE of each rating model, its overall RMSE dashed.
    - ``loss.png``: the learner's ranking and rating loss per micro-batch, with a moving average.
    - ``confusion.png``: the learner's like/dislike confusion matrix as an annotated heatmap.
    - ``deciles.png``: HR@k per stream decile, grouped bars per model.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for plot in plots_for(report):
        figure = plot.draw(report)
        FigureCanvasAgg(figure)  # attaches itself: PNG rendering without pyplot or a display
        path = out_dir / plot.file_name
        figure.savefig(path, dpi=DPI)
        paths.append(path)
    return paths


def _values(values: Sequence[float | None]) -> npt.NDArray[np.float64]:
    return np.asarray([np.nan if value is None else value for value in values], dtype=float)


def _on_dataset(report: RunReport) -> str:
    return f", {report.dataset}" if report.dataset else ""


def _line_style(name: str) -> dict[str, Any]:
    """The learner drawn bold and on top; the baselines thinner, so the comparison reads at once."""
    if name == LEARNER:
        return {"linewidth": 2.4, "zorder": 3}
    return {"linewidth": 1.4, "alpha": 0.85, "zorder": 2}


def _events_axis(axes: Axes) -> None:
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.grid(alpha=0.3)


def _has_ranking_series(report: RunReport) -> bool:
    series = report.prequential.ranking_series
    return bool(series.event_index) and bool(series.models)


def _draw_metrics(report: RunReport) -> Figure:
    k = report.prequential.k
    series = report.prequential.ranking_series
    x = _values(series.event_index)
    names = ordered_models(series.models)
    figure = Figure(figsize=(10, 7.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True)
    for axes, metric, field in ((top, f"HR@{k}", "hr"), (bottom, f"NDCG@{k}", "ndcg")):
        for name in names:
            y = _values(getattr(series.models[name], field))
            if len(y) == len(x):
                axes.plot(
                    x, y, label=display_name(name), color=colour(name, names), **_line_style(name)
                )
        axes.set_ylabel(f"windowed {metric}")
        axes.set_ylim(bottom=0)
        axes.set_title(f"{metric} over the stream")
        _events_axis(axes)
    top.legend(loc="best")
    bottom.set_xlabel("events processed")
    about = f" (sliding window of the last {series.window:,} relevant events)"
    figure.suptitle(f"Prequential ranking quality{_on_dataset(report)}{about}")
    return figure


def _has_rating_series(report: RunReport) -> bool:
    rating = report.prequential.rating_series
    return rating is not None and bool(rating.event_index) and bool(rating.rmse)


def _draw_rating(report: RunReport) -> Figure:
    rating = report.prequential.rating_series
    assert rating is not None
    x = _values(rating.event_index)
    names = ordered_models(rating.rmse)
    models = report.prequential.models
    figure = Figure(figsize=(10, 4.5), layout="constrained")
    axes = figure.subplots()
    for name in names:
        line_colour = colour(name, names)
        label = display_name(name)
        y = _values(rating.rmse[name])
        if len(y) != len(x):
            continue
        axes.plot(x, y, color=line_colour, label=f"{label}, windowed", **_line_style(name))
        figures = models.get(name)
        if figures is not None and figures.rating is not None:
            overall = figures.rating.rmse
            axes.axhline(
                overall,
                color=line_colour,
                linestyle="--",
                linewidth=1.2,
                label=f"{label}, overall {overall:.3f}",
            )
    about = f" (sliding window of the last {rating.window:,} rated events)"
    axes.set_title(f"Prequential rating error{_on_dataset(report)}{about}")
    axes.set_xlabel("events processed")
    axes.set_ylabel("RMSE")
    axes.legend(loc="best")
    _events_axis(axes)
    return figure


def _finite_losses(report: RunReport) -> list[tuple[str, npt.NDArray[np.float64]]]:
    """The loss series that have at least one finite value, with their labels."""
    losses = report.training_loss
    found = []
    for values, label in (
        (losses.ranking_loss, "ranking loss"),
        (losses.rating_loss, "rating loss"),
    ):
        array = _values(values)
        if len(array) == len(losses.event_index) and np.isfinite(array).any():
            found.append((label, array))
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


def _draw_loss(report: RunReport) -> Figure:
    x = _values(report.training_loss.event_index)
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
    figure.suptitle(
        f"{display_name(LEARNER)} training loss (micro-batches of {report.batch_size} events)"
    )
    return figure


def _has_confusion(report: RunReport) -> bool:
    learner = report.prequential.models.get(LEARNER)
    return learner is not None and learner.rating is not None


def _draw_confusion(report: RunReport) -> Figure:
    rating = report.prequential.models[LEARNER].rating
    assert rating is not None
    confusion = rating.confusion
    # Rows are the prediction and columns the truth, as in the summary's table.
    counts = np.array([[confusion.tp, confusion.fp], [confusion.fn, confusion.tn]], dtype=float)
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
    threshold = report.prequential.like_threshold
    axes.set_title(
        f"{display_name(LEARNER)}: like = rating ≥ {threshold}\naccuracy {rating.like_accuracy:.3f}"
    )
    figure.colorbar(image, ax=axes, label="events", format=StrMethodFormatter("{x:,.0f}"))
    return figure


def _has_deciles(report: RunReport) -> bool:
    return any(figures.deciles for figures in report.prequential.models.values())


def _draw_deciles(report: RunReport) -> Figure:
    k = report.prequential.k
    models = report.prequential.models
    names = [name for name in ordered_models(models) if models[name].deciles]
    width = 0.8 / len(names)
    figure = Figure(figsize=(10, 4.8), layout="constrained")
    axes = figure.subplots()
    deciles: set[int] = set()
    for position, name in enumerate(names):
        rows = models[name].deciles
        deciles.update(row.decile for row in rows)
        x = np.array([row.decile for row in rows], dtype=float)
        offset = (position - (len(names) - 1) / 2) * width
        hit_rates = _values([row.hr for row in rows])
        axes.bar(x + offset, hit_rates, width, label=display_name(name), color=colour(name, names))
    axes.set_xticks(sorted(deciles))
    axes.set_xlabel("stream decile (1 = first tenth of the events)")
    axes.set_ylabel(f"HR@{k}")
    axes.set_title(f"HR@{k} per tenth of the stream{_on_dataset(report)}")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.legend(loc="best")
    return figure


_PLOTS = (
    Plot(
        "metrics.png",
        "Windowed HR@{k} and NDCG@{k} over the stream",
        _has_ranking_series,
        _draw_metrics,
    ),
    Plot("rating.png", "Windowed RMSE over the stream", _has_rating_series, _draw_rating),
    Plot(
        "loss.png",
        "Training loss per micro-batch",
        lambda report: bool(_finite_losses(report)),
        _draw_loss,
    ),
    Plot("confusion.png", "Like/dislike confusion matrix", _has_confusion, _draw_confusion),
    Plot("deciles.png", "HR@{k} per stream decile", _has_deciles, _draw_deciles),
)
