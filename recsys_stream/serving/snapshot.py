"""What serving needs from the learner, as plain arrays: a model snapshot and user states.

The trainer publishes, besides each touched user's top-K list, a :class:`UserState` per touched
user (their representation vector and what they already rated) and now and then a
:class:`ModelSnapshot` (item vectors, biases, the popularity prior, the cold-start lists). With
both, a server computes a user's list on a cache miss with one matrix-vector product, no torch
and no learner: the same scores the learner would give, since a user's representation does not
depend on the candidate item.

>>> import numpy as np
>>> snapshot = ModelSnapshot(
...     version=3, created_at=0.0, item_ids=np.array([10, 20, 30]),
...     item_vectors=np.eye(3, 2, dtype=np.float32), item_offsets=np.zeros(3, np.float32),
...     popular=np.array([30, 10]), trending=np.array([10]))
>>> user = UserState(user_id=7, vector=np.array([1.0, 0.0], np.float32),
...                  seen=np.array([10]), model_version=3)
>>> [item for item, _ in snapshot.recommend(user, k=2)]
[20, 30]
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class UserState:
    """A user as the model sees them after the last batch that touched them."""

    user_id: int
    vector: FloatArray
    """The user representation ``h_u`` (user embedding and recent-item context)."""
    seen: IdArray
    """Item ids the user rated (excluded from recommendations)."""
    model_version: int

    def to_bytes(self) -> bytes:
        """A compact binary form (read on every cache miss, so no zip, no pickle): a header
        of four int64 (user id, model version, dimensions, number of seen items), the vector
        as float32, the seen ids as int64."""
        vector = np.ascontiguousarray(self.vector, dtype=np.float32)
        seen = np.ascontiguousarray(self.seen, dtype=np.int64)
        header = np.array([self.user_id, self.model_version, len(vector), len(seen)], np.int64)
        return header.tobytes() + vector.tobytes() + seen.tobytes()

    @classmethod
    def from_bytes(cls, payload: bytes) -> UserState:
        user_id, version, dim, n_seen = (int(x) for x in np.frombuffer(payload, np.int64, 4))
        vector = np.frombuffer(payload, np.float32, dim, offset=32)
        seen = np.frombuffer(payload, np.int64, n_seen, offset=32 + 4 * dim)
        return cls(user_id, vector, seen, version)


@dataclass(frozen=True)
class ModelSnapshot:
    """Everything needed to score any user against the catalogue, frozen at one version."""

    version: int
    created_at: float
    item_ids: IdArray
    item_vectors: FloatArray
    """``[n_items, dim]`` item embeddings."""
    item_offsets: FloatArray
    """Per item, what the score adds to ``<h_u, e_i>``: bias plus the weighted popularity prior."""
    popular: IdArray
    """Cold-start list: items by the model's user-independent score (bias + prior)."""
    trending: IdArray
    """Items by recent (decayed) popularity."""

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def scores(self, vector: FloatArray) -> FloatArray:
        scores: FloatArray = self.item_vectors @ vector + self.item_offsets
        return scores

    def recommend(
        self, user: UserState | None, k: int, *, exclude: npt.ArrayLike | None = None
    ) -> list[tuple[int, float]]:
        """The ``k`` best items for ``user`` (their seen items and ``exclude`` left out); for
        None, the cold-start list with the items' user-independent scores."""
        excluded = np.asarray(exclude if exclude is not None else [], dtype=np.int64)
        if user is None:
            keep = self.popular[~np.isin(self.popular, excluded)][:k]
            offsets = self.item_offsets[self._positions(keep)]
            return [(int(i), float(s)) for i, s in zip(keep, offsets, strict=True)]
        scores = self.scores(user.vector)
        positions = self._positions(np.concatenate([user.seen, excluded]))
        scores[positions[positions >= 0]] = -np.inf
        return self._best(scores, k)

    def similar(self, item_id: int, k: int) -> list[tuple[int, float]]:
        """Items with the most similar vectors (cosine); empty for an unknown item."""
        [position] = self._positions(np.array([item_id]))
        if position < 0:
            return []
        norms = np.linalg.norm(self.item_vectors, axis=1) + 1e-12
        similarity = (self.item_vectors @ self.item_vectors[position]) / (norms * norms[position])
        similarity[position] = -np.inf
        return self._best(similarity, k)

    def _best(self, scores: npt.NDArray[np.floating[Any]], k: int) -> list[tuple[int, float]]:
        k = min(k, self.n_items)
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        # Best first; ties by catalogue position (first appearance), as the evaluator breaks them.
        top = top[np.lexsort((top, -scores[top]))]
        return [(int(self.item_ids[p]), float(scores[p])) for p in top if np.isfinite(scores[p])]

    @cached_property
    def _sorted_ids(self) -> tuple[IdArray, IdArray]:
        order = np.argsort(self.item_ids, kind="stable")
        return order, self.item_ids[order]

    def _positions(self, item_ids: npt.ArrayLike) -> IdArray:
        """Catalogue positions of ``item_ids`` (-1 for unknown ids)."""
        wanted = np.asarray(item_ids, dtype=np.int64)
        order, sorted_ids = self._sorted_ids
        if len(sorted_ids) == 0:
            return np.full(len(wanted), -1, dtype=np.int64)
        found = np.minimum(np.searchsorted(sorted_ids, wanted), len(sorted_ids) - 1)
        return np.where(sorted_ids[found] == wanted, order[found], -1)

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.array([self.version], dtype=np.int64),
            created_at=np.array([self.created_at]),
            item_ids=self.item_ids.astype(np.int64),
            item_vectors=self.item_vectors.astype(np.float32),
            item_offsets=self.item_offsets.astype(np.float32),
            popular=self.popular.astype(np.int64),
            trending=self.trending.astype(np.int64),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, payload: bytes) -> ModelSnapshot:
        with np.load(io.BytesIO(payload)) as arrays:
            return cls(
                version=int(arrays["meta"][0]),
                created_at=float(arrays["created_at"][0]),
                item_ids=arrays["item_ids"],
                item_vectors=arrays["item_vectors"],
                item_offsets=arrays["item_offsets"],
                popular=arrays["popular"],
                trending=arrays["trending"],
            )
