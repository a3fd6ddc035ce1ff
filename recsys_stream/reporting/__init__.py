"""Human-readable views of a run's report: a terminal table, a markdown summary, PNG plots,
and the run directory that holds them with ``report.json``."""

from recsys_stream.reporting.names import display_name, ordered_models
from recsys_stream.reporting.plots import plots_for, write_plots
from recsys_stream.reporting.run import write_report, write_run
from recsys_stream.reporting.tables import comparison_table, markdown_summary

__all__ = [
    "comparison_table",
    "display_name",
    "markdown_summary",
    "ordered_models",
    "plots_for",
    "write_plots",
    "write_report",
    "write_run",
]
