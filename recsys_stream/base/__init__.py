"""The contract between models and the evaluator: :class:`StreamingRecommender` (learn a
micro-batch, rank the catalogue for a :class:`RankingQuery`), :class:`RatingPredictor`, and
:class:`TargetRanker` for models that rank each event's item more cheaply than by scoring the
whole catalogue."""

from recsys_stream.base.query import RankingQuery
from recsys_stream.base.recommender import RatingPredictor, StreamingRecommender, TargetRanker

__all__ = ["RankingQuery", "RatingPredictor", "StreamingRecommender", "TargetRanker"]
