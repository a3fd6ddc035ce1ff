"""One replica of a group's model: several workers learn a stream split by user, each holds
the whole model, and they keep it whole by exchanging what each one learned.

A worker learns the events of its own sources (Kafka partitions: each user's events are in
one). Every few hundred events it :meth:`Replica.take` s a :class:`ModelUpdate`: the delta of
its item-side state (summed by the others, :class:`~recsys_stream.learner.ItemSharing`), the
learner's and the evaluator's state of the users it learned since its previous update (which
replace the others' copies of those users), and its **positions**: per source, the offset of
the first event whose learning is in no update yet. :meth:`Replica.apply` takes another
worker's update in. The group's updates, in one order that every worker reads (a log), make
every replica the same model: items summed, each user as their owner left them.

The positions make the group learn each event once however sources move between workers: a
worker that takes a source over first applies every update published before, then learns
from the source's position on. What its last owner learned after that position is in no
update, so it is learned again, once; what lies before it is in the replicas already.

>>> from recsys_stream.events import RatingEvent, encode
>>> from recsys_stream.serving import InMemorySink
>>> from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, StreamConfig
>>> config = LearnerConfig(
...     model=ModelConfig(dim=8, context_length=4), retrain=RetrainConfig(every_events=None)
... )
>>> def worker() -> Replica:
...     processor = StreamProcessor.create(config, StreamConfig(baselines=False), InMemorySink())
...     return Replica(processor)
>>> one, two = worker(), worker()
>>> one.learn([encode(RatingEvent(1, 10, 5.0, 0)), encode(RatingEvent(1, 20, 4.0, 1))], "p0", 0)
2
>>> two.learn([encode(RatingEvent(2, 30, 3.0, 2))], "p1", 0)
1
>>> two.apply(ModelUpdate.from_bytes(one.take().to_bytes()))
True
>>> one.apply(two.take())
True
>>> one.positions == two.positions == {"p0": 2, "p1": 1}
True
>>> one.events_held == two.events_held == 3
True
>>> sorted(two.processor.learner.features.users.ids.tolist())  # user 1 is known to both
[1, 2]
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from recsys_stream._arrays import pack, unpack
from recsys_stream.evaluation import EvaluatedRows, UserHistories
from recsys_stream.learner import (
    ItemDelta,
    ItemSharing,
    ModelBase,
    UserStates,
    adopt_base,
    export_users,
    import_users,
    relearn_since,
)
from recsys_stream.stream.processor import StreamProcessor

__all__ = ["ModelUpdate", "Replica"]

_MAGIC: Final = b"RSUPDATE\x01"


@dataclass(frozen=True)
class ModelUpdate:
    """What one worker learned since its previous update."""

    origin: str
    """The sending worker (one run of it: a restarted worker is a new origin)."""
    sequence: int
    """1, 2, ... for the updates of one origin."""
    positions: dict[str, int]
    """Per source the sender learns: the first offset whose learning is in no update."""
    items: ItemDelta
    users: UserStates
    histories: UserHistories
    """The evaluator's histories of the same users."""
    evaluation: EvaluatedRows = field(default_factory=EvaluatedRows.empty)
    """The sender's prequential records of the events it learned: summed, every replica's
    figures are the whole stream's."""
    model_version: int = 1
    """The version of the sender's model (bases adopted): the deltas and user embeddings
    of an update whose version is not the receiver's are of a model it has replaced."""

    @property
    def events(self) -> int:
        """Events whose learning this update carries."""
        return self.items.events

    def to_bytes(self) -> bytes:
        """A compact binary form (:func:`recsys_stream._arrays.pack`), the item delta and
        the user states in theirs."""
        rows = self.evaluation
        return pack(
            _MAGIC,
            {
                "origin": self.origin,
                "sequence": self.sequence,
                "model_version": self.model_version,
                "positions": self.positions,
                "evaluation": {
                    "events": rows.events,
                    "first_timestamp": rows.first_timestamp,
                    "last_timestamp": rows.last_timestamp,
                    "ranked": sorted(rows.ranks),
                    "predicted": sorted(rows.predicted),
                },
            },
            {
                "items": np.frombuffer(self.items.to_bytes(), dtype=np.uint8),
                "users": np.frombuffer(self.users.to_bytes(), dtype=np.uint8),
                "history_users": self.histories.user_ids,
                "history_lengths": self.histories.lengths,
                "history_items": self.histories.item_ids,
                "ranked_at": rows.ranked_at,
                "ranked_warm": rows.ranked_warm,
                "actual": rows.actual,
                "warm": rows.warm,
                **{f"ranks:{name}": ranks for name, ranks in rows.ranks.items()},
                **{f"predicted:{name}": values for name, values in rows.predicted.items()},
            },
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelUpdate:
        """The update of :meth:`to_bytes`; ``ValueError`` for bytes that are not one."""
        header, arrays = unpack(data, _MAGIC, "model update")
        try:
            evaluation = header["evaluation"]
            rows = EvaluatedRows(
                events=int(evaluation["events"]),
                first_timestamp=evaluation["first_timestamp"],
                last_timestamp=evaluation["last_timestamp"],
                ranked_at=arrays["ranked_at"],
                ranked_warm=arrays["ranked_warm"],
                ranks={str(name): arrays[f"ranks:{name}"] for name in evaluation["ranked"]},
                actual=arrays["actual"],
                warm=arrays["warm"],
                predicted={
                    str(name): arrays[f"predicted:{name}"] for name in evaluation["predicted"]
                },
            )
            return cls(
                origin=str(header["origin"]),
                sequence=int(header["sequence"]),
                positions={str(k): int(v) for k, v in header["positions"].items()},
                items=ItemDelta.from_bytes(arrays["items"].tobytes()),
                users=UserStates.from_bytes(arrays["users"].tobytes()),
                histories=UserHistories(
                    arrays["history_users"], arrays["history_lengths"], arrays["history_items"]
                ),
                evaluation=rows,
                model_version=int(header["model_version"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"an unreadable model update: {exc}") from exc


class Replica:
    """A :class:`StreamProcessor` kept as one replica of a group's model."""

    def __init__(self, processor: StreamProcessor, origin: str | None = None) -> None:
        self.processor = processor
        self.origin = origin or uuid.uuid4().hex
        self.sequence = 0
        self.positions: dict[str, int] = {}
        """Per source, the group's position as far as this replica knows: the highest of
        those in the updates it took or applied."""
        self.learned_positions: dict[str, int] = {}
        """Per source this worker learns, the first offset it has not learned."""
        self.applied: dict[str, int] = {}
        """The last sequence applied, per origin."""
        self.events_from_others = 0
        self._sharing = ItemSharing(processor.learner)
        self._learned_since_take: dict[str, int] = {}
        self._foreign = np.zeros(0, dtype=bool)
        """Per user row: the user's state came from another worker's update (since this one
        last learned an event of theirs)."""
        self._events_at_take = processor.learner.events_learned
        self.base_id: str | None = None
        """The last :class:`ModelBase` adopted."""
        self.events_at_base = 0
        """:attr:`events_held` when it was adopted (when the next refit is due)."""
        self.events_relearned = 0
        processor.evaluator.share_rows()
        # The group refits on its leader's schedule (:meth:`start_refit`), not each replica.
        processor.learner.scheduled_retrains = False

    @property
    def events_held(self) -> int:
        """Events whose learning this replica holds: its own, and those of the updates it
        applied."""
        return self.processor.learner.events_learned + self.events_from_others

    @property
    def pending(self) -> int:
        """Events learned here and in no update yet."""
        return self.processor.learner.events_learned - self._events_at_take

    @property
    def has_new_positions(self) -> bool:
        """Sources moved on since the previous update (even with nothing learned: messages
        that held only invalid events)."""
        return bool(self._learned_since_take)

    # ------------------------------------------------------------------------ learning

    def position(self, source: str) -> int:
        """The first offset of ``source`` that the group has not learned, as far as known."""
        return max(self.positions.get(source, 0), self.learned_positions.get(source, 0))

    def learn(self, payloads: Sequence[bytes | None], source: str, first_offset: int) -> int:
        """Learn consecutive records of one source from ``first_offset`` (those below its
        position are skipped); the number of events learned."""
        skip = max(0, self.position(source) - first_offset)
        chosen = list(payloads[skip:])
        if not chosen:
            return 0
        result = self.processor.process_records(chosen)
        self.record(result.user_ids, {source: first_offset + len(payloads)})
        return result.learned

    def record(self, user_ids: npt.NDArray[np.int64], positions: Mapping[str, int]) -> None:
        """Note what a processed batch learned (for callers that drive the processor
        themselves): the users whose events it was, now this worker's, and the sources'
        next offsets."""
        self._set_owned(user_ids, owned=True)
        for source, offset in positions.items():
            self.learned_positions[source] = max(self.learned_positions.get(source, 0), offset)
            self._learned_since_take[source] = self.learned_positions[source]

    # ------------------------------------------------------------------------ the exchange

    def take(self) -> ModelUpdate:
        """What this worker learned since its previous update; its positions become the
        group's."""
        learner, evaluator = self.processor.learner, self.processor.evaluator
        changed = learner.take_changed_users()
        # Replayed events of a user who moved to another worker change the local copy only:
        # the user's state is the owner's to send.
        users = changed[~self._foreign_of(changed)]
        positions, self._learned_since_take = self._learned_since_take, {}
        self.sequence += 1
        update = ModelUpdate(
            origin=self.origin,
            sequence=self.sequence,
            positions=positions,
            items=self._sharing.take(),
            users=export_users(learner, users),
            histories=evaluator.export_users(users),
            evaluation=evaluator.take_rows(),
            model_version=learner.version,
        )
        self._events_at_take = learner.events_learned
        self._merge(update.positions)
        return update

    def apply(self, update: ModelUpdate) -> bool:
        """Take another worker's update in; False (nothing done) for this worker's own and
        for one applied before."""
        if update.origin == self.origin or update.sequence <= self.applied.get(update.origin, 0):
            return False
        learner = self.processor.learner
        # Learned in a model since replaced by a base: its log's part only (the sender learns
        # its events again in the base, and sends them then).
        same_model = update.model_version == learner.version
        self._sharing.apply(update.items, model=same_model)
        import_users(learner, update.users, model=same_model)
        self._set_owned(update.users.user_ids, owned=False)
        evaluator = self.processor.evaluator
        evaluator.extend_catalog(update.items.item_ids)
        evaluator.import_users(update.histories)
        evaluator.add_rows(update.evaluation)
        self.applied[update.origin] = update.sequence
        self.events_from_others += update.events
        self._merge(update.positions)
        return True

    # ------------------------------------------------------------------------ refits

    def start_refit(self) -> None:
        """Start a full retrain of the model on the log this replica holds (every user's
        history), to be shared as a base (:meth:`take_base`)."""
        self.processor.learner.start_retrain(swap=False)

    def take_base(self) -> ModelBase | None:
        """The refit of :meth:`start_refit` once done (to be published); None before."""
        return self.processor.learner.take_refit()

    def adopt(self, base: ModelBase) -> bool:
        """Swap ``base`` in at its place in the group's log and learn again, in it, the events
        of this worker's users that it does not cover; False (nothing done) for one adopted
        before."""
        if base.id == self.base_id:
            return False
        learner = self.processor.learner
        adopt_base(learner, base)
        # The delta of the next update counts from the base: this worker's learning in the
        # model it replaced is dropped, and its events learned again below.
        self._sharing.rebase_model()
        known = learner.features.users.ids
        self.events_relearned += relearn_since(learner, base, known[~self._foreign_of(known)])
        self.base_id = base.id
        self.events_at_base = self.events_held
        return True

    def release_users(self) -> None:
        """Own none of the users held (a worker that starts from another's checkpoint): this
        worker sends their state, and learns their events again in a base, only once it has
        learned an event of theirs."""
        self._set_owned(self.processor.learner.features.users.ids, owned=False)

    def _set_owned(self, user_ids: npt.NDArray[np.int64], *, owned: bool) -> None:
        rows = self.processor.learner.features.users.lookup(user_ids)
        rows = rows[rows >= 0]
        if len(rows) and int(rows.max()) >= len(self._foreign):
            grown = np.zeros(max(int(rows.max()) + 1, 2 * len(self._foreign)), dtype=bool)
            grown[: len(self._foreign)] = self._foreign
            self._foreign = grown
        self._foreign[rows] = not owned

    def _foreign_of(self, user_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        rows = self.processor.learner.features.users.lookup(user_ids)
        inside = (rows >= 0) & (rows < len(self._foreign))
        foreign = np.zeros(len(rows), dtype=bool)
        foreign[inside] = self._foreign[rows[inside]]
        return foreign

    def _merge(self, positions: Mapping[str, int]) -> None:
        for source, offset in positions.items():
            self.positions[source] = max(self.positions.get(source, 0), offset)

    # --------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        """Plain values, beside the processor's state in a checkpoint. Take an update just
        before (:attr:`pending` 0): a checkpoint must hold no learning that is in no update."""
        return {
            "origin": self.origin,
            "sequence": self.sequence,
            "positions": dict(self.positions),
            "applied": dict(self.applied),
            "events_from_others": self.events_from_others,
            "foreign_users": self.processor.learner.features.users.ids[
                np.flatnonzero(self._foreign)
            ].tolist(),
            "base_id": self.base_id,
            "events_at_base": self.events_at_base,
            "events_relearned": self.events_relearned,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint as a new origin: the updates of the checkpoint's origin
        that came after it are then applied like anyone's (its learning since is in them, not
        in the checkpoint); those up to it are in the checkpoint already."""
        self.positions = {str(k): int(v) for k, v in state["positions"].items()}
        self.applied = {str(k): int(v) for k, v in state["applied"].items()}
        self.applied[str(state["origin"])] = int(state["sequence"])
        self.events_from_others = int(state["events_from_others"])
        # Absent from the checkpoints of workers that predate group refits.
        self.base_id = state.get("base_id")
        self.events_at_base = int(state.get("events_at_base", 0))
        self.events_relearned = int(state.get("events_relearned", 0))
        self.origin, self.sequence = uuid.uuid4().hex, 0
        self.learned_positions, self._learned_since_take = {}, {}
        self._foreign = np.zeros(0, dtype=bool)
        self._set_owned(np.asarray(state["foreign_users"], dtype=np.int64), owned=False)
        self._sharing = ItemSharing(self.processor.learner)
        self._events_at_take = self.processor.learner.events_learned
