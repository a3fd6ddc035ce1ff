"""The contract between models and the evaluator: :class:`StreamingRecommender` (learn a
micro-batch, rank the catalogue for a :class:`RankingQuery`) and :class:`RatingPredictor`."""

from recsys_stream.base.query import RankingQuery
from recsys_stream.base.recommender import RatingPredictor, StreamingRecommender

__all__ = ["RankingQuery", "RatingPredictor", "StreamingRecommender"]
