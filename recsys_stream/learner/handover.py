"""Users handed over between trainer workers: the learner's state of some users, by user id.

Kafka splits a stream's users across trainer workers by partition. When a partition moves (a
worker stops, crashes or joins), the worker that takes it must continue its users where the
last one left them, not from nothing: :func:`export_users` gives the learner's per-user state of
those users (user embeddings with their Adagrad accumulators, the users' rating effects, their
histories, which are the model's recent-item context), keyed by user id and item id so that it
means the same to a learner whose rows are numbered otherwise; :func:`import_users` makes it
the receiving learner's state of those users, replacing what it held.

What is shared by every worker (items, the dense weights; :mod:`.sharing`) is not in it.

>>> from recsys_stream.events import EventBatch
>>> from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig
>>> config = LearnerConfig(
...     model=ModelConfig(dim=8, context_length=4), retrain=RetrainConfig(every_events=None)
... )
>>> old, new = OnlineLearner(config), OnlineLearner(config)
>>> old.learn(EventBatch.from_arrays([7, 7, 8], [10, 20, 10], [5.0, 4.0, 3.0], [0, 1, 2]))
>>> states = UserStates.from_bytes(export_users(old, [7, 9]).to_bytes())
>>> states.user_ids.tolist(), states.history_lengths.tolist()  # 9 was never seen
([7], [2])
>>> import_users(new, states)
>>> new.features.sequences.lengths(new.features.users.lookup([7])).tolist()
[2]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream._arrays import FloatArray, IntArray, pack, unpack
from recsys_stream.learner.online import OnlineLearner

__all__ = ["UserStates", "export_users", "import_users"]

_MAGIC: Final = b"RSUSERS\x01"
_FIELDS: Final = (
    "user_ids",
    "embedding",
    "embedding_accumulator",
    "residual_sum",
    "rating_count",
    "history_lengths",
    "history_items",
    "history_values",
)


@dataclass(frozen=True)
class UserStates:
    """The learner's state of some users. Row fields are aligned with ``user_ids``; the
    histories are laid out one user after another (``history_lengths`` each), oldest first,
    items by id."""

    user_ids: IntArray
    embedding: npt.NDArray[np.float32]
    embedding_accumulator: npt.NDArray[np.float32]
    residual_sum: FloatArray
    """Sum of each user's rating residuals (the user effect's numerator)."""
    rating_count: FloatArray
    history_lengths: IntArray
    history_items: IntArray
    history_values: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.user_ids)

    def to_bytes(self) -> bytes:
        """A compact binary form (:func:`recsys_stream._arrays.pack`)."""
        return pack(_MAGIC, {}, {name: getattr(self, name) for name in _FIELDS})

    @classmethod
    def from_bytes(cls, data: bytes) -> UserStates:
        """The states of :meth:`to_bytes`; ``ValueError`` for bytes that are not one."""
        _, arrays = unpack(data, _MAGIC, "user handover")
        try:
            states = cls(**{name: arrays[name] for name in _FIELDS})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"an unreadable user handover: {exc}") from exc
        n = len(states.user_ids)
        lengths = {len(states.embedding), len(states.residual_sum), len(states.rating_count)}
        if lengths != {n} or int(states.history_lengths.sum()) != len(states.history_items):
            raise ValueError("an unreadable user handover: fields of different lengths")
        return states


def export_users(learner: OnlineLearner, user_ids: npt.ArrayLike) -> UserStates:
    """The learner's state of the users ``user_ids`` it knows (the others are left out)."""
    with learner.lock:
        features, model = learner.features, learner.model
        ids = np.unique(np.asarray(user_ids, dtype=np.int64))
        rows = features.users.lookup(ids)
        known = rows >= 0
        ids, rows = ids[known], rows[known]
        index = torch.as_tensor(rows, device=model.device)
        lengths, item_rows, values = features.sequences.of_users(rows)
        statistics = features.statistics
        return UserStates(
            user_ids=ids,
            embedding=model.user_embedding.weight[index].cpu().numpy().copy(),
            embedding_accumulator=model.user_embedding.accumulator[index].cpu().numpy().copy(),
            residual_sum=_at(statistics.user_sum, rows),
            rating_count=_at(statistics.user_count, rows),
            history_lengths=lengths,
            history_items=features.items.ids[item_rows].copy(),
            history_values=values,
        )


def import_users(learner: OnlineLearner, states: UserStates, *, model: bool = True) -> None:
    """Make ``states`` the learner's state of those users (new users join; the state it held
    of the others is replaced). Items of their histories that the learner does not know join
    its catalogue with their initial rows. Without ``model``, the users' embeddings are left
    as they are (states learned in a model the learner has since replaced: a group's refit)."""
    with learner.lock:
        features, network = learner.features, learner.model
        rows = features.users.add(states.user_ids)
        item_rows = features.items.add(states.history_items)
        network.ensure_rows(len(features.users), features.items.ids)
        if model:
            index = torch.as_tensor(rows, device=network.device)
            table = network.user_embedding
            table.weight[index] = torch.as_tensor(states.embedding, device=network.device)
            table.accumulator[index] = torch.as_tensor(
                states.embedding_accumulator, device=network.device
            )
        features.statistics.set_user_totals(rows, states.residual_sum, states.rating_count)
        features.sequences.replace(rows, states.history_lengths, item_rows, states.history_values)


def _at(values: FloatArray, rows: IntArray) -> FloatArray:
    """``values[rows]``, 0 where ``values`` is shorter (a user with no effect yet)."""
    result = np.zeros(len(rows))
    inside = rows < len(values)
    result[inside] = values[rows[inside]]
    return result
