"""The protocol's baselines, evaluated beside the learner in the same run on the same stream:
MostPopular and RecentPopular (``../shared/PROTOCOL.md``) and an online co-occurrence kNN."""

from recsys_stream.baselines.cooc_knn import CoocKNN
from recsys_stream.baselines.popularity import Popularity, most_popular, recent_popular

__all__ = ["CoocKNN", "Popularity", "most_popular", "recent_popular"]
