"""The one spelling of every figure's name: in reports, series, the API and the dashboards.

Ranking figures carry their cut-off (``hr@10``), rating figures do not (``rmse``); a scope other
than the whole stream is a suffix: ``_warm`` (users with an earlier event), ``_last20`` (the last
20% of relevant events), ``_window`` (the sliding window's latest value).

>>> metric_name("hr", 10), metric_name("ndcg", 10, "window"), metric_name("rmse", scope="warm")
('hr@10', 'ndcg@10_window', 'rmse_warm')
"""

from __future__ import annotations

from typing import Final, Literal

RankingMetric = Literal["hr", "ndcg", "precision", "recall", "f1"]
RatingMetric = Literal["rmse", "mae"]
Scope = Literal["all", "warm", "last20", "window"]

RANKING_METRICS: Final[tuple[RankingMetric, ...]] = ("hr", "ndcg", "precision", "recall", "f1")
"""Every ranking figure, in the order reports list them."""


def metric_name(
    metric: RankingMetric | RatingMetric, k: int | None = None, scope: Scope = "all"
) -> str:
    """The name of ``metric`` (at cut-off ``k`` for a ranking metric) over ``scope``."""
    if metric in RANKING_METRICS:
        if k is None:
            raise ValueError(f"the ranking metric {metric!r} needs a cut-off k")
        base = f"{metric}@{k}"
    else:
        base = metric
    return base if scope == "all" else f"{base}_{scope}"
