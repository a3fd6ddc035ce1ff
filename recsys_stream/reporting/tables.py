"""A run's report as text: a terminal table and a markdown summary (which links the plots).

Everything here is derived from the :class:`~recsys_stream.report.RunReport` alone, so a
``report.json`` written yesterday can be re-rendered today (:meth:`RunReport.from_dict`), and a
report that lacks pieces (no baselines, no rating model, a run too short for a sliding window)
still renders: the absent parts are shown as ``-`` or left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from recsys_stream.report import ModelFigures, RunReport
from recsys_stream.reporting.names import (
    LEARNER,
    RECENT_POPULAR,
    display_name,
    ordered_models,
)
from recsys_stream.reporting.plots import plots_for


def comparison_table(report: RunReport) -> str:
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


def markdown_summary(report: RunReport) -> str:
    """The run as a markdown document: what ran, the figures, and the plots next to it.

    The plot links are relative file names, so the summary belongs in the same directory as the
    PNGs that :func:`~recsys_stream.reporting.plots.write_plots` writes; it links exactly the
    plots that the report has data for.
    """
    k = report.prequential.k
    models = report.prequential.models
    sections = [f"# Prequential evaluation: {report.dataset}", _run_line(report)]

    header, rows = _table(report)
    table = ["## Models", _markdown_table(header, rows, align_right_from=1)]
    ratio = _ratio_line(report)
    if ratio is not None:
        table.append(ratio)
    sections.append("\n\n".join(table))

    learner = models.get(LEARNER)
    if learner is not None and learner.rating is not None:
        sections.append(_confusion_section(learner, report.prequential.like_threshold))

    with_deciles = [name for name in ordered_models(models) if models[name].deciles]
    if with_deciles:
        sections.append(f"## HR@{k} by stream decile\n\n" + _deciles_table(report, with_deciles))

    plots = plots_for(report)
    if plots:
        links = "\n\n".join(f"![{plot.caption(report)}]({plot.file_name})" for plot in plots)
        sections.append("## Plots\n\n" + links)

    sections.append("## Protocol\n\n" + _protocol_note(report))
    return "\n\n".join(sections) + "\n"


def _cell(value: float | None) -> str:
    """A figure to four decimals; ``-`` where it is absent or not finite."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.4f}"


def _table(report: RunReport) -> tuple[list[str], list[list[str]]]:
    """The comparison as a header and rows of strings, shared by the text and markdown forms."""
    k = report.prequential.k
    models = report.prequential.models
    names = ordered_models(models)

    def rating(figures: ModelFigures, name: str) -> float | None:
        return None if figures.rating is None else float(getattr(figures.rating, name))

    rows: list[tuple[str, Callable[[ModelFigures], float | None]]] = [
        (f"HR@{k}", lambda f: f.overall.hr),
        (f"NDCG@{k}", lambda f: f.overall.ndcg),
        (f"Precision@{k}", lambda f: f.overall.precision),
        (f"Recall@{k}", lambda f: f.overall.recall),
        (f"F1@{k}", lambda f: f.overall.f1),
        (f"HR@{k} last 20%", lambda f: f.last20.hr),
        (f"HR@{k} warm users", lambda f: f.warm.hr),
        ("RMSE", lambda f: rating(f, "rmse")),
        ("MAE", lambda f: rating(f, "mae")),
    ]
    header = ["Metric", *(display_name(name) for name in names)]
    body = [[label, *(_cell(figure(models[name])) for name in names)] for label, figure in rows]
    return header, body


def _ratio_line(report: RunReport) -> str | None:
    """Each other model's HR@k over RecentPopular's; None without a non-zero RecentPopular."""
    k = report.prequential.k
    models = report.prequential.models
    reference = models.get(RECENT_POPULAR)
    if reference is None or not reference.overall.hr:
        return None
    ratios = [
        f"{display_name(name)} {models[name].overall.hr / reference.overall.hr:.2f}x"
        for name in ordered_models(models)
        if name != RECENT_POPULAR
    ]
    if not ratios:
        return None
    return f"HR@{k} as a multiple of {display_name(RECENT_POPULAR)}: " + ", ".join(ratios)


def _markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int
) -> str:
    """A GitHub markdown table; columns from ``align_right_from`` on are numbers, right-aligned."""
    rule = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in [header, rule, *rows])


def _run_line(report: RunReport) -> str:
    """One line saying what ran."""
    prequential = report.prequential
    stream = report.stream
    return " · ".join(
        [
            f"{prequential.events:,} events ({prequential.relevant_events:,} relevant)",
            f"{prequential.users:,} users",
            f"{prequential.items:,} items",
            f"batch size {report.batch_size}",
            f"k = {prequential.k}",
            f"device `{report.device}`",
            f"{report.wall_seconds:,.1f} s wall ({report.events_per_second:,.0f} events/s)",
            f"model version {stream.model_version}",
            f"retrains {stream.retrains_completed}",
            f"dead letters {stream.dead_letters}",
        ]
    )


def _confusion_section(figures: ModelFigures, like_threshold: float) -> str:
    assert figures.rating is not None
    rating = figures.rating
    confusion = rating.confusion
    rows = [
        ["**predicted like**", f"{confusion.tp:,}", f"{confusion.fp:,}"],
        ["**predicted dislike**", f"{confusion.fn:,}", f"{confusion.tn:,}"],
    ]
    table = _markdown_table(["", "actual like", "actual dislike"], rows, align_right_from=1)
    scores = ", ".join(
        f"{label} {_cell(value)}"
        for label, value in (
            ("accuracy", rating.like_accuracy),
            ("precision", rating.like_precision),
            ("recall", rating.like_recall),
        )
    )
    title = f"## {display_name(LEARNER)}: like/dislike (rating ≥ {like_threshold})"
    return f"{title}\n\n{table}\n\nLike {scores}."


def _deciles_table(report: RunReport, names: Sequence[str]) -> str:
    """HR@k per decile, a column per model; the relevant-event counts are the first model's."""
    models = report.prequential.models
    by_model = {name: {row.decile: row for row in models[name].deciles} for name in names}
    deciles = sorted({decile for rows in by_model.values() for decile in rows})
    header = ["Decile", "Relevant events", *(display_name(name) for name in names)]
    rows = []
    for decile in deciles:
        counts = [by_model[name][decile].relevant for name in names if decile in by_model[name]]
        cells = [
            _cell(by_model[name][decile].hr if decile in by_model[name] else None) for name in names
        ]
        rows.append([str(decile), f"{counts[0]:,}", *cells])
    return _markdown_table(header, rows, align_right_from=1)


def _protocol_note(report: RunReport) -> str:
    learner = (
        f"The learner is scored and then trained in micro-batches of {report.batch_size} events, "
        "each batch ranked with the parameters from before it. "
    )
    baselines = (
        f"The baselines are {report.baseline_batching}."
        if set(report.prequential.models) - {LEARNER}
        else ""
    )
    return (
        "All figures follow the prequential protocol (test-then-train): every event is first used "
        "to evaluate each model, which has not seen it yet, and only then to train it. "
        f"{learner}{baselines}"
    ).strip()
