"""The prequential report as typed data: what the evaluator measured, what the trainer
publishes, what a simulation run records, and the compact figures that serving answers.

Every figure's name in JSON, the API and the dashboards is spelled by :func:`metric_name`. This
package is plain Python (no numpy, no torch), so that every layer, the API included, can read
and write reports.

>>> metric_name("hr", 10, "last20")
'hr@10_last20'
"""

from recsys_stream.report.figures import (
    Confusion,
    DecileFigures,
    ModelFigures,
    RankingFigures,
    RatingFigures,
)
from recsys_stream.report.live import LiveFigures, LiveModelFigures, PointFigures, SeriesPoint
from recsys_stream.report.names import (
    RANKING_METRICS,
    RankingMetric,
    RatingMetric,
    Scope,
    metric_name,
)
from recsys_stream.report.prequential import PrequentialReport, StreamReport
from recsys_stream.report.run import LossSeries, RunReport
from recsys_stream.report.series import RankingSeries, RatingSeries, WindowedRanking

__all__ = [
    "RANKING_METRICS",
    "Confusion",
    "DecileFigures",
    "LiveFigures",
    "LiveModelFigures",
    "LossSeries",
    "ModelFigures",
    "PointFigures",
    "PrequentialReport",
    "RankingFigures",
    "RankingMetric",
    "RankingSeries",
    "RatingFigures",
    "RatingMetric",
    "RatingSeries",
    "RunReport",
    "Scope",
    "SeriesPoint",
    "StreamReport",
    "WindowedRanking",
    "metric_name",
]
