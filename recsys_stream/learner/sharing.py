"""Item-side state shared between trainer workers, by exchanging what each one changed.

Kafka splits a stream's users across workers by partition; everything about **items** must then
be shared: item embeddings and biases with their Adagrad accumulators, the items' rating sums
and counts, their popularity, the catalogue, and the dense weights every event updates. Each
worker learns on its own copy and, every few hundred events, :meth:`ItemSharing.take` gives the
**delta** of its copy since the last exchange (the rows that changed, keyed by item id);
:meth:`ItemSharing.apply` adds another worker's delta to the local copy. Deltas are summed, not
averaged: every event's gradient step is applied once to every copy, as a single worker would
apply it, only later (the staleness is the exchange interval). Accumulators are exchanged too,
so an item's step size shrinks with the evidence of every worker, as it would in one model.

Rows are keyed by item id, and a new item's initial row is a function of its id
(:func:`recsys_stream._arrays.keyed_normal`): a worker that hears of an item from another one
creates the same initial row, so a delta carries only changes.

>>> from recsys_stream.events import EventBatch
>>> from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig
>>> config = LearnerConfig(
...     model=ModelConfig(dim=8, context_length=4), retrain=RetrainConfig(every_events=None)
... )
>>> one, two = OnlineLearner(config), OnlineLearner(config)
>>> sharing_one, sharing_two = ItemSharing(one), ItemSharing(two)
>>> one.learn(EventBatch.from_arrays([1, 1], [10, 20], [5.0, 4.0], [0, 1]))
>>> two.learn(EventBatch.from_arrays([2], [30], [3.0], [2]))
>>> sharing_two.apply(sharing_one.take())
>>> sharing_one.apply(sharing_two.take())
>>> sorted(one.features.items.ids.tolist()) == sorted(two.features.items.ids.tolist())
True
>>> rows_one = one.features.items.lookup([10, 20, 30])
>>> rows_two = two.features.items.lookup([10, 20, 30])
>>> weights_one = one.model.item_embedding.weight[rows_one]
>>> weights_two = two.model.item_embedding.weight[rows_two]
>>> bool(torch.allclose(weights_one, weights_two, atol=1e-6))
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream._arrays import FloatArray, IntArray, pack, unpack
from recsys_stream.learner.online import OnlineLearner

__all__ = ["ItemDelta", "ItemSharing", "RetrainNotShareableError"]

_MODEL_FIELDS = ("embedding", "embedding_accumulator", "bias", "bias_accumulator")
"""Rows learned by gradient (in one model's space)."""
_LOG_FIELDS = ("rating_sum", "rating_count", "popularity")
"""Rows counted from the log (whatever the model)."""
_ROW_FIELDS = _MODEL_FIELDS + _LOG_FIELDS


_MAGIC: Final = b"RSDELTA\x01"


class RetrainNotShareableError(RuntimeError):
    """A retrain replaced the learner's model on its own: its change is a refit, not a sum of
    steps, and cannot be exchanged as a delta (a group's workers adopt a shared refit instead,
    :mod:`.refit`, and then :meth:`ItemSharing.rebase_model`)."""


@dataclass(frozen=True)
class ItemDelta:
    """What one worker's learning changed in the item-side state since its previous delta.

    Row fields are aligned with ``item_ids``; a row's change is counted from the item's
    initial row for an item new to the sender.
    """

    item_ids: IntArray
    embedding: npt.NDArray[np.float32]
    embedding_accumulator: npt.NDArray[np.float32]
    bias: npt.NDArray[np.float32]
    bias_accumulator: npt.NDArray[np.float32]
    rating_sum: FloatArray
    rating_count: FloatArray
    popularity: FloatArray
    """``[items, horizons]`` popularity counts added, each horizon's kept against its
    ``popularity_reference``."""
    popularity_reference: list[float | None]
    popularity_clock: float | None
    """The latest event time the sender's counts hold (their clock)."""
    rating_total: float
    rating_events: int
    dense: dict[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    events: int = 0
    """Events the sender learned since its previous delta."""

    def __len__(self) -> int:
        return len(self.item_ids)

    def to_bytes(self) -> bytes:
        """A compact binary form (:func:`recsys_stream._arrays.pack`): the scalars in a JSON
        header, then the arrays' bytes."""
        return pack(
            _MAGIC,
            {
                "popularity_reference": self.popularity_reference,
                "popularity_clock": self.popularity_clock,
                "rating_total": self.rating_total,
                "rating_events": self.rating_events,
                "events": self.events,
            },
            {
                "item_ids": self.item_ids,
                **{name: getattr(self, name) for name in _ROW_FIELDS},
                **{f"dense/{name}": value for name, value in self.dense.items()},
            },
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ItemDelta:
        """The delta of :meth:`to_bytes`; ``ValueError`` for bytes that are not one."""
        header, arrays = unpack(data, _MAGIC, "item delta")
        try:
            return cls(
                item_ids=arrays["item_ids"],
                **{name: arrays[name] for name in _ROW_FIELDS},
                popularity_reference=list(header["popularity_reference"]),
                popularity_clock=header["popularity_clock"],
                rating_total=float(header["rating_total"]),
                rating_events=int(header["rating_events"]),
                dense={
                    name.removeprefix("dense/"): value
                    for name, value in arrays.items()
                    if name.startswith("dense/")
                },
                events=int(header["events"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"an unreadable item delta: {exc}") from exc


@dataclass
class _ItemState:
    """The item-side state of a learner, row-aligned with its features' item index."""

    item_ids: IntArray
    rows: dict[str, npt.NDArray[np.floating]]
    popularity_reference: list[float | None]
    popularity_clock: float | None
    rating_total: float
    rating_events: int
    dense: dict[str, npt.NDArray[np.float32]]
    events: int


class ItemSharing:
    """Takes the deltas of one :class:`OnlineLearner`'s item-side state and applies others'."""

    def __init__(self, learner: OnlineLearner) -> None:
        self.learner = learner
        self._base = self._current()
        self._version = learner.version

    # ------------------------------------------------------------------------ reading

    def _current(self) -> _ItemState:
        learner = self.learner
        features, model = learner.features, learner.model
        n = len(features.items)
        ids = features.items.ids.copy()
        statistics = features.statistics
        return _ItemState(
            item_ids=ids,
            rows={
                "embedding": _rows(model.item_embedding.weight, n),
                "embedding_accumulator": _rows(model.item_embedding.accumulator, n),
                "bias": _rows(model.item_bias.weight, n),
                "bias_accumulator": _rows(model.item_bias.accumulator, n),
                "rating_sum": _padded(statistics.item_sum, n),
                "rating_count": _padded(statistics.item_count, n),
                "popularity": np.stack(
                    [counts.counts_of(ids) for counts in features.popularities], axis=1
                ),
            },
            popularity_reference=[counts.reference_time for counts in features.popularities],
            popularity_clock=features.popularity.clock,
            rating_total=statistics.total,
            rating_events=statistics.count,
            dense={
                name: value.detach().cpu().numpy().copy()
                for name, value in model.dense.state_dict().items()
            },
            events=learner.events_learned,
        )

    def _extend_base(self, n_items: int) -> None:
        """Give the base rows for items registered since it was taken: their initial rows."""
        base = self._base
        known = len(base.item_ids)
        if n_items <= known:
            return
        new_ids = self.learner.features.items.ids[known:n_items].copy()
        initial = self.learner.model.item_embedding.initial_values(new_ids).cpu().numpy()
        for name, values in base.rows.items():
            extra = initial if name == "embedding" else np.zeros((len(new_ids), *values.shape[1:]))
            base.rows[name] = np.concatenate([values, extra.astype(values.dtype)])
        base.item_ids = np.concatenate([base.item_ids, new_ids])

    def _advance_base_popularity(self, references: list[float | None]) -> None:
        """Keep the base's popularity counts against the later of its reference times and
        ``references`` (a delta's), so that :meth:`_popularity_factor` only ever scales
        counts down (up, it overflows past 1,024 half-lives).

        A base taken before anything was counted has no reference time and holds no counts:
        it takes the local counts' own (which the delta's counts were just added against), so
        that what it receives is weighed as the local counts weigh it. Weighed against the
        delta's reference instead, a count received from a worker earlier in event time was
        kept too heavy by ``2^(time apart / half-life)``, and the next delta sent that excess
        back negated."""
        base = self._base
        kept = list(base.popularity_reference)  # a new list: deltas hold the old one
        for k, (counts, reference) in enumerate(
            zip(self.learner.features.popularities, references, strict=True)
        ):
            current = kept[k]
            if current is None:
                kept[k] = counts.reference_time
            elif reference is not None and reference > current:
                base.rows["popularity"][:, k] *= counts.conversion(current, reference)
                kept[k] = reference
        base.popularity_reference = kept

    def _popularity_factor(
        self, sources: list[float | None], targets: list[float | None]
    ) -> FloatArray:
        """Per horizon, what turns popularity counts kept against its ``sources`` time into
        counts kept against its ``targets`` time (targets are never earlier than sources)."""
        return np.array(
            [
                counts.conversion(source, target)
                for counts, source, target in zip(
                    self.learner.features.popularities, sources, targets, strict=True
                )
            ]
        )

    # ------------------------------------------------------------------------ the exchange

    def take(self) -> ItemDelta:
        """The delta of the item-side state since the previous :meth:`take` (rows that
        changed only); the state now becomes the base of the next one."""
        with self.learner.lock:
            if self.learner.version != self._version:
                raise RetrainNotShareableError(
                    "a retrain replaced the model since the last exchange without "
                    "rebase_model(); workers that share items adopt a shared refit instead"
                )
            current = self._current()
            self._extend_base(len(current.item_ids))
            base = self._base
            bases = dict(base.rows)
            bases["popularity"] = bases["popularity"] * self._popularity_factor(
                base.popularity_reference, current.popularity_reference
            )
            changes = {name: current.rows[name] - value for name, value in bases.items()}
            changed = np.zeros(len(current.item_ids), dtype=bool)
            for values in changes.values():
                changed |= np.any(values != 0, axis=tuple(range(1, values.ndim)))
            delta = ItemDelta(
                item_ids=current.item_ids[changed],
                embedding=changes["embedding"][changed].astype(np.float32),
                embedding_accumulator=changes["embedding_accumulator"][changed].astype(np.float32),
                bias=changes["bias"][changed].astype(np.float32),
                bias_accumulator=changes["bias_accumulator"][changed].astype(np.float32),
                rating_sum=changes["rating_sum"][changed],
                rating_count=changes["rating_count"][changed],
                popularity=changes["popularity"][changed],
                popularity_reference=list(current.popularity_reference),
                popularity_clock=current.popularity_clock,
                rating_total=current.rating_total - base.rating_total,
                rating_events=current.rating_events - base.rating_events,
                dense={name: value - base.dense[name] for name, value in current.dense.items()},
                events=current.events - base.events,
            )
            self._base = current
            return delta

    def rebase_model(self) -> None:
        """The learner's model was replaced (a group's refit): the model's rows as they are
        now become the base of the next delta; the log's (statistics, popularity) stay as
        they were, so that what was counted since the last delta is still sent."""
        with self.learner.lock:
            current = self._current()
            self._extend_base(len(current.item_ids))
            for name in _MODEL_FIELDS:
                self._base.rows[name] = current.rows[name]
            self._base.dense = current.dense
            self._version = self.learner.version

    def apply(self, delta: ItemDelta, *, model: bool = True) -> None:
        """Add another worker's delta to the local state (new items join the catalogue).
        Without ``model``, only the log's part (catalogue, statistics, popularity): a delta
        learned in a model the learner has since replaced (a group's refit)."""
        learner, with_model = self.learner, model
        with learner.lock:
            features, network = learner.features, learner.model
            rows = features.items.add(delta.item_ids)
            network.ensure_rows(len(features.users), features.items.ids)
            self._extend_base(len(features.items))
            index = torch.as_tensor(rows, device=network.device)

            def add(table: torch.Tensor, values: npt.NDArray[np.float32]) -> None:
                change = torch.as_tensor(values, device=network.device).reshape(
                    len(rows), table.shape[1]
                )
                table.index_add_(0, index, change)

            if with_model:
                add(network.item_embedding.weight, delta.embedding)
                add(network.item_embedding.accumulator, delta.embedding_accumulator)
                add(network.item_bias.weight, delta.bias)
                add(network.item_bias.accumulator, delta.bias_accumulator)
            features.statistics.add_item_totals(
                rows, delta.rating_sum, delta.rating_count, delta.rating_total, delta.rating_events
            )
            for k, counts in enumerate(features.popularities):
                counts.add_counts(
                    delta.item_ids,
                    delta.popularity[:, k],
                    delta.popularity_reference[k],
                    delta.popularity_clock,
                )
            if with_model:
                with torch.no_grad():
                    parameters = network.dense.state_dict()
                    for name, change in delta.dense.items():
                        parameters[name].add_(torch.as_tensor(change, device=network.device))
            # What was received is not the local worker's own change: the base moves with it.
            base = self._base
            self._advance_base_popularity(delta.popularity_reference)
            for name in _ROW_FIELDS if with_model else _LOG_FIELDS:
                values = getattr(delta, name).reshape(base.rows[name][rows].shape)
                if name == "popularity":
                    values = values * self._popularity_factor(
                        delta.popularity_reference, base.popularity_reference
                    )
                base.rows[name][rows] += values  # rows are unique: one per item id
            base.rating_total += delta.rating_total
            base.rating_events += delta.rating_events
            if with_model:
                for name, change in delta.dense.items():
                    base.dense[name] = base.dense[name] + change


def _rows(table: torch.Tensor, n: int) -> npt.NDArray[np.float32]:
    values: npt.NDArray[np.float32] = table[:n].detach().cpu().numpy().copy()
    return values


def _padded(values: FloatArray, n: int) -> FloatArray:
    if len(values) >= n:
        return values[:n].copy()
    return np.concatenate([values, np.zeros(n - len(values))])
