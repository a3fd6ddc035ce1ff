"""Internal array helpers shared by the learner, the baselines and the evaluator.

Vectorised group operations over micro-batches (:mod:`.grouped`), growing id-to-row maps
(:mod:`.idindex`), draws keyed by id (:mod:`.keyed`), a binary form for arrays
that cross processes (:mod:`.packed`), per-user event sequences
(:mod:`.sequences`), decayed counts (:mod:`.counts`) and catalogue ranking on any torch device
(:mod:`.retrieval`). Private to ``recsys_stream``: adapters never import them.
"""

from recsys_stream._arrays.counts import SECONDS_PER_DAY, DecayedCounts
from recsys_stream._arrays.grouped import (
    FloatArray,
    IntArray,
    exclusive_group_sum,
    occurrence_rank,
    ragged_arange,
)
from recsys_stream._arrays.idindex import DENSE_ID_LIMIT, MISSING, IdIndex
from recsys_stream._arrays.keyed import keyed_normal
from recsys_stream._arrays.packed import pack, unpack
from recsys_stream._arrays.retrieval import (
    MISS,
    candidate_mask,
    in_row_order,
    on_catalogue,
    shared_score_ranks,
    target_ranks,
    top_k,
)
from recsys_stream._arrays.sequences import PAD, UserSequences, Window

__all__ = [
    "DENSE_ID_LIMIT",
    "MISS",
    "MISSING",
    "PAD",
    "SECONDS_PER_DAY",
    "DecayedCounts",
    "FloatArray",
    "IdIndex",
    "IntArray",
    "UserSequences",
    "Window",
    "candidate_mask",
    "exclusive_group_sum",
    "in_row_order",
    "keyed_normal",
    "occurrence_rank",
    "on_catalogue",
    "pack",
    "ragged_arange",
    "shared_score_ranks",
    "target_ranks",
    "top_k",
    "unpack",
]
