"""Evaluation: the prequential (test-then-train) protocol of ``../shared/PROTOCOL.md``, the
per-event records its figures are computed from, and the offline protocols (80/20 RMSE,
leave-one-out ranking) for comparison with published numbers."""

from recsys_stream.evaluation.breakdown import (
    BucketFigures,
    bucket_figures,
    item_popularity,
    user_history,
)
from recsys_stream.evaluation.metrics import RankingLog, RatingLog
from recsys_stream.evaluation.offline import (
    RankingEvaluation,
    RatingEvaluation,
    leave_latest_out,
    random_split,
    ranking_evaluation,
    rating_evaluation,
)
from recsys_stream.evaluation.prequential import (
    BatchOutcome,
    EvaluatedRows,
    PrequentialEvaluator,
    UserHistories,
)

__all__ = [
    "BatchOutcome",
    "BucketFigures",
    "EvaluatedRows",
    "PrequentialEvaluator",
    "RankingEvaluation",
    "RankingLog",
    "RatingEvaluation",
    "RatingLog",
    "UserHistories",
    "bucket_figures",
    "item_popularity",
    "leave_latest_out",
    "random_split",
    "ranking_evaluation",
    "rating_evaluation",
    "user_history",
]
