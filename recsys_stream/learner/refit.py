"""A full retrain shared by a group of trainer workers: the refitted model as a **base**.

One worker retrains a fresh model on the log it holds (every user's history: the group's
updates carry them) and publishes it as a :class:`ModelBase`: the model's parameters by user
and item id, and **what it covers**, per user the number of history events it learned. Every
worker, the retraining one included, reads the base at the same point of the group's log,
swaps it in (:func:`adopt_base`: a new model version) and learns again, in the new model, the
events of its own users that came after the snapshot (:func:`relearn_since`). A refit is not a
sum of steps: it lives in another embedding space than the model it replaces, so what workers
learned in the old model after the base cannot be added to it; their own events are relearned
instead, once, by their owner.

>>> from recsys_stream.events import EventBatch
>>> from recsys_stream.learner import OnlineLearner
>>> from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig
>>> config = LearnerConfig(
...     model=ModelConfig(dim=8, context_length=4),
...     retrain=RetrainConfig(every_events=None, where="inline", epochs=1),
... )
>>> leader, other = OnlineLearner(config), OnlineLearner(config)
>>> for learner in (leader, other):
...     learner.learn(EventBatch.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 4.0, 3.0], [0, 1, 2]))
>>> leader.start_retrain(swap=False)
>>> base = ModelBase.from_bytes(leader.take_refit().to_bytes())
>>> base.covered.tolist()
[2, 1]
>>> other.learn(EventBatch.from_arrays([2], [20], [4.0], [3]))  # after the snapshot
>>> adopt_base(other, base)
>>> other.version
2
>>> relearn_since(other, base, [1, 2])  # user 2's event at 3 is not in the base
1
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream._arrays import IdIndex, IntArray, pack, ragged_arange, unpack
from recsys_stream.model import ContextualNeuMF
from recsys_stream.model.tables import EmbeddingTable

if TYPE_CHECKING:
    from recsys_stream.learner.online import OnlineLearner

__all__ = ["ModelBase", "adopt_base", "relearn_since"]

_MAGIC: Final = b"RSBASE\x00\x01"
_TABLES: Final = ("user_embedding", "item_embedding", "item_bias")
RELEARN_BATCH: Final = 1024
"""Events per step when a worker learns its users' events since a base again."""


@dataclass(frozen=True)
class ModelBase:
    """A refitted model by id, and the history events it learned."""

    id: str
    seed: int
    """The refit's seed: a worker that meets a new item creates the same initial row."""
    user_ids: IntArray
    """The users of the user table's rows, in order."""
    covered: IntArray
    """Per user (aligned with ``user_ids``): the first events of the history it learned."""
    item_ids: IntArray
    """The items of the item tables' rows, in order."""
    tables: dict[str, npt.NDArray[np.float32]]
    """``<table>`` and ``<table>/accumulator`` for each of the model's tables."""
    dense: dict[str, npt.NDArray[np.float32]]
    optimizer_steps: list[int]
    optimizer_moments: dict[str, list[npt.NDArray[np.float32]]]
    """Adam's ``first`` and ``second`` moments of the dense parameters."""
    steps: int

    @property
    def events(self) -> int:
        """Events the refit learned."""
        return int(self.covered.sum())

    @classmethod
    def of(
        cls, model: ContextualNeuMF, user_ids: IntArray, covered: IntArray, item_ids: IntArray
    ) -> ModelBase:
        """The base of a refitted ``model`` whose rows are those of ``user_ids`` (which it
        learned up to ``covered`` events each) and ``item_ids``."""
        tables: dict[str, npt.NDArray[np.float32]] = {}
        for name in _TABLES:
            state = getattr(model, name).state_dict()
            tables[name] = state["weight"].numpy()
            tables[f"{name}/accumulator"] = state["accumulator"].numpy()
        optimizer = model.optimizer.state_dict()
        return cls(
            id=uuid.uuid4().hex,
            seed=int(model.item_embedding.seed),
            user_ids=np.asarray(user_ids, dtype=np.int64),
            covered=np.asarray(covered, dtype=np.int64),
            item_ids=np.asarray(item_ids, dtype=np.int64),
            tables=tables,
            dense={k: v.detach().cpu().numpy().copy() for k, v in model.dense.state_dict().items()},
            optimizer_steps=[int(step) for step in optimizer["steps"]],
            optimizer_moments={
                moment: [t.numpy() for t in optimizer[moment]] for moment in ("first", "second")
            },
            steps=model.steps,
        )

    def to_bytes(self) -> bytes:
        """A compact binary form (:func:`recsys_stream._arrays.pack`)."""
        moments = {
            f"adam/{moment}/{index}": value
            for moment, values in self.optimizer_moments.items()
            for index, value in enumerate(values)
        }
        return pack(
            _MAGIC,
            {
                "id": self.id,
                "seed": self.seed,
                "optimizer_steps": self.optimizer_steps,
                "steps": self.steps,
            },
            {
                "user_ids": self.user_ids,
                "covered": self.covered,
                "item_ids": self.item_ids,
                **{f"table/{name}": value for name, value in self.tables.items()},
                **{f"dense/{name}": value for name, value in self.dense.items()},
                **moments,
            },
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelBase:
        """The base of :meth:`to_bytes`; ``ValueError`` for bytes that are not one."""
        header, arrays = unpack(data, _MAGIC, "model base")
        try:
            steps = [int(step) for step in header["optimizer_steps"]]
            base = cls(
                id=str(header["id"]),
                seed=int(header["seed"]),
                user_ids=arrays["user_ids"],
                covered=arrays["covered"],
                item_ids=arrays["item_ids"],
                tables=_prefixed(arrays, "table/"),
                dense=_prefixed(arrays, "dense/"),
                optimizer_steps=steps,
                optimizer_moments={
                    moment: [arrays[f"adam/{moment}/{i}"] for i in range(len(steps))]
                    for moment in ("first", "second")
                },
                steps=int(header["steps"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"an unreadable model base: {exc}") from exc
        if len(base.covered) != len(base.user_ids) or any(
            len(base.tables.get(f"{name}/accumulator", ())) != len(base.tables.get(name, ()))
            for name in _TABLES
        ):
            raise ValueError("an unreadable model base: fields of different lengths")
        return base


def adopt_base(learner: OnlineLearner, base: ModelBase) -> None:
    """Make ``base`` the learner's model (a new version): its rows for the users and items it
    knows, initial rows for those it does not (they came after its snapshot)."""
    with learner.lock:
        features = learner.features
        model = ContextualNeuMF(
            learner.config.model,
            learner.device,
            seed=base.seed,
            relevance_threshold=learner.relevance_threshold,
        )
        item_rows = features.items.add(base.item_ids)
        model.ensure_rows(len(features.users), features.items.ids)
        user_rows = features.users.lookup(base.user_ids)
        known = user_rows >= 0  # all of them: the base came after their events in the log
        for name, rows, chosen in (
            ("user_embedding", user_rows[known], known),
            ("item_embedding", item_rows, slice(None)),
            ("item_bias", item_rows, slice(None)),
        ):
            table: EmbeddingTable = getattr(model, name)
            index = torch.as_tensor(rows, device=model.device)
            table.weight[index] = torch.as_tensor(base.tables[name][chosen], device=model.device)
            table.accumulator[index] = torch.as_tensor(
                base.tables[f"{name}/accumulator"][chosen], device=model.device
            )
        model.dense.load_state_dict({k: torch.as_tensor(v) for k, v in base.dense.items()})
        model.optimizer.load_state_dict(
            {
                "steps": base.optimizer_steps,
                "first": [torch.as_tensor(v) for v in base.optimizer_moments["first"]],
                "second": [torch.as_tensor(v) for v in base.optimizer_moments["second"]],
            }
        )
        model.steps = base.steps
        model.events_learned = base.events
        learner.replace_model(model)


def relearn_since(learner: OnlineLearner, base: ModelBase, user_ids: npt.ArrayLike) -> int:
    """Learn again, in the learner's model, the events of the users ``user_ids`` that come
    after what ``base`` covers (all of a user it does not know), oldest first; the number
    of events."""
    with learner.lock:
        features = learner.features
        ids = np.unique(np.asarray(user_ids, dtype=np.int64))
        rows = features.users.lookup(ids)
        ids, rows = ids[rows >= 0], rows[rows >= 0]
        covered_by = IdIndex()
        covered_by.add(base.user_ids)
        found = covered_by.lookup(ids)
        start = np.zeros(len(ids), dtype=np.int64)
        start[found >= 0] = base.covered[found[found >= 0]]
        end = features.sequences.lengths(rows)
        owner, positions = ragged_arange(start, end - start)
        users = rows[owner]
        # Oldest first across users: each event's context is its user's events before it.
        chronological = np.argsort(positions, kind="stable")
        users, positions = users[chronological], positions[chronological]
        model = learner.model
        model.ensure_rows(len(features.users), features.items.ids)
        for at in range(0, len(users), RELEARN_BATCH):
            chosen = slice(at, at + RELEARN_BATCH)
            inputs = features.training_inputs(users[chosen], positions[chosen], model.device)
            model.learn(inputs)
        learner.mark_changed(users)
        return len(users)


def _prefixed(
    arrays: dict[str, npt.NDArray[np.float32]], prefix: str
) -> dict[str, npt.NDArray[np.float32]]:
    chosen = {name: value for name, value in arrays.items() if name.startswith(prefix)}
    return {name.removeprefix(prefix): value for name, value in chosen.items()}
