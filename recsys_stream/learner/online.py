"""The online learner: learns from every micro-batch, scores for the evaluator, and hands
serving its state (top-K lists, user states, model snapshots).

>>> from recsys_stream.events import EventBatch
>>> from recsys_stream.settings import LearnerConfig, ModelConfig
>>> learner = OnlineLearner(LearnerConfig(model=ModelConfig(dim=8, context_length=4)))
>>> learner.learn(EventBatch.from_arrays([1, 1, 2], [10, 20, 10], [5.0, 4.0, 3.0], [0, 1, 2]))
>>> items, _, _ = learner.serving_state([2], k=2)
>>> items.tolist()
[[20, -1]]
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from recsys_stream._arrays import IntArray, in_row_order, on_catalogue, top_k
from recsys_stream.base import RankingQuery
from recsys_stream.events import EventBatch
from recsys_stream.learner.allocator import retain_freed_memory
from recsys_stream.learner.cpus import available_cpus
from recsys_stream.learner.device import resolve_device
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.refit import ModelBase
from recsys_stream.learner.replay_buffer import ReplayBuffer, concatenate
from recsys_stream.learner.retrain import BackgroundRetrain
from recsys_stream.learner.retrain_process import ProcessRetrain
from recsys_stream.model import BatchInputs, ContextualNeuMF, StepLosses
from recsys_stream.serving import ModelSnapshot, UserState
from recsys_stream.settings import RELEVANCE_THRESHOLD, LearnerConfig

log = logging.getLogger(__name__)


@dataclass
class _Refit:
    """A group's refit: the rows and history lengths of its snapshot, and its base once
    done."""

    user_ids: IntArray
    covered: IntArray
    item_ids: IntArray
    base: ModelBase | None = None


@dataclass(frozen=True, slots=True)
class _Scored:
    """What the model made of a batch before learning it (a cache for the evaluator's two
    questions), valid for that very batch object while ``state`` (the events learned and the
    model version) holds. The batch is held, so that its id cannot pass to another one."""

    batch: EventBatch
    state: tuple[int, int]
    inputs: BatchInputs
    user_vectors: torch.Tensor
    ratings: torch.Tensor


class OnlineLearner:
    """A :class:`ContextualNeuMF` learned online, with the log-derived state it reads."""

    def __init__(
        self,
        config: LearnerConfig | None = None,
        *,
        relevance_threshold: float = RELEVANCE_THRESHOLD,
    ) -> None:
        self.config = config or LearnerConfig()
        self.device = resolve_device(self.config.device)
        self.threads = self.config.threads or available_cpus()
        """torch threads of online learning (a retrain in a process takes some while it runs)."""
        torch.set_num_threads(self.threads)
        retain_freed_memory(self.config.retained_memory_mb)
        self.features = StreamFeatures(
            context_length=self.config.model.context_length,
            popularity_half_life_days=self.config.popularity_half_life_days,
            popularity_horizons_days=self.config.model.popularity_horizons_days,
            item_shrinkage=self.config.item_shrinkage,
            user_shrinkage=self.config.user_shrinkage,
        )
        self.relevance_threshold = relevance_threshold
        self.model = self._new_model(self.config.seed)
        self.replay = ReplayBuffer(
            self.config.replay_capacity, self.config.model.context_length, seed=self.config.seed
        )
        self.version = 1
        self.events_learned = 0
        self.retrains_completed = 0
        self.last_losses: StepLosses | None = None
        """What the model's latest online step reported (None before the first)."""
        self.steps_skipped = 0
        """Micro-batches whose loss was not finite: learned nothing (they stay in the log)."""
        self._retrain: BackgroundRetrain | ProcessRetrain | None = None
        self._refit: _Refit | None = None
        """A retrain started with ``swap=False``: what its snapshot covers, then (done) its
        base."""
        self.scheduled_retrains = True
        """Retrains start on the config's schedule (a group's worker: on its leader's)."""
        self._threads: int | None = None
        """Online learning's torch threads before a retrain in a process took some."""
        self._scoring_cache: _Scored | None = None
        self._events_at_last_retrain = 0
        self._time_of_last_retrain = time.monotonic()
        self._users_changed = np.zeros(0, dtype=bool)
        """Per user row: changed since :meth:`take_changed_users` last ran (replayed events
        change users that are not in the batch)."""
        # Held while the model is read or replaced, so a retrained model swaps in atomically.
        self.lock = threading.RLock()

    def _new_model(self, seed: int) -> ContextualNeuMF:
        return ContextualNeuMF(
            self.config.model, self.device, seed=seed, relevance_threshold=self.relevance_threshold
        )

    # ------------------------------------------------------------------------ learning

    def learn(self, batch: EventBatch) -> None:
        """Learn a micro-batch of events, in stream order."""
        if len(batch) == 0:
            return
        with self.lock:
            inputs, n_users, _ = self.features.advance(batch, self.device)
            self.model.ensure_rows(n_users, self.features.items.ids)
            replayed = self.replay.sample(self.config.replay_per_batch, inputs)
            learned = concatenate(inputs, replayed)
            self.last_losses = self.model.learn(learned)
            if not self.last_losses.applied:
                self.steps_skipped += 1
                log.warning(
                    "skipped the step of a micro-batch of %d events: its loss was not finite "
                    "(%d skipped so far); the model is as before it",
                    len(batch),
                    self.steps_skipped,
                )
            self.mark_changed(learned.users.cpu().numpy())
            self.replay.add(inputs)
            self.events_learned += len(batch)
            if self._retrain is not None:
                if self._refit is None:  # a refit for a group learns nothing after its snapshot
                    self._retrain.record(batch)
                if self._retrain.ready:
                    self._finish_retrain()
            elif self.scheduled_retrains and self._retrain_due():
                self.start_retrain()

    def mark_changed(self, user_rows: npt.NDArray[np.int64]) -> None:
        """Note that the state of the users of ``user_rows`` (-1: none) changed."""
        n_users = len(self.features.users)
        if len(self._users_changed) < n_users:
            grown = np.zeros(max(n_users, 2 * len(self._users_changed)), dtype=bool)
            grown[: len(self._users_changed)] = self._users_changed
            self._users_changed = grown
        self._users_changed[user_rows[user_rows >= 0]] = True

    def take_changed_users(self) -> npt.NDArray[np.int64]:
        """The ids of the users whose state changed since the last call (a trainer worker
        sends their state to the others)."""
        with self.lock:
            rows = np.flatnonzero(self._users_changed)
            self._users_changed[:] = False
            return self.features.users.ids[rows].copy()

    # ------------------------------------------------------------------------ retrains

    def _retrain_due(self) -> bool:
        schedule = self.config.retrain
        by_count = (
            schedule.every_events is not None
            and self.events_learned - self._events_at_last_retrain >= schedule.every_events
        )
        by_time = (
            schedule.every_seconds is not None
            and time.monotonic() - self._time_of_last_retrain >= schedule.every_seconds
        )
        return by_count or by_time

    @property
    def retrain_running(self) -> bool:
        """A retrain runs, or a group's refit waits to be taken (:meth:`take_refit`)."""
        return self._retrain is not None or self._refit is not None

    def start_retrain(self, *, swap: bool = True) -> None:
        """Start a full retrain on a snapshot of the log (in the background if configured).

        With ``swap`` it learns the batches learned online meanwhile and is swapped in
        between two batches; without, it is a refit for a group of workers: it learns the
        snapshot only and, once done, :meth:`take_refit` gives it as a
        :class:`~recsys_stream.learner.refit.ModelBase` (every worker then adopts it).
        """
        with self.lock:
            if self._retrain is not None:
                return
            if not swap:
                sequences = self.features.sequences
                self._refit = _Refit(
                    user_ids=self.features.users.ids.copy(),
                    covered=sequences.lengths(np.arange(len(self.features.users))),
                    item_ids=self.features.items.ids.copy(),
                )
            config = self.config.retrain
            self._events_at_last_retrain = self.events_learned
            self._time_of_last_retrain = time.monotonic()
            seed = self.config.seed + self.version
            model = self._new_model(seed)
            if config.where == "process":
                self._retrain = ProcessRetrain(
                    self.features,
                    model,
                    config,
                    seed=seed,
                    retained_memory_mb=self.config.retained_memory_mb,
                )
                # The retrain's cores are taken from online learning while it runs.
                self._threads = torch.get_num_threads()
                torch.set_num_threads(max(1, self.threads - config.threads))
            else:
                snapshot = StreamFeatures.from_state_dict(self.features.state_dict(), self.features)
                self._retrain = BackgroundRetrain(snapshot, model, config, seed=seed)
            self._retrain.start()
            if config.where == "inline":
                self._finish_retrain()

    def _finish_retrain(self) -> None:
        retrain, self._retrain = self._retrain, None
        assert retrain is not None
        model = retrain.finish()
        self._restore_threads()
        refit = self._refit
        if model is None:
            self._refit = None
            return
        if refit is not None:
            model.ensure_rows(len(refit.user_ids), refit.item_ids)
            refit.base = ModelBase.of(model, refit.user_ids, refit.covered, refit.item_ids)
            return
        model.ensure_rows(len(self.features.users), self.features.items.ids)
        self.replace_model(model)

    def replace_model(self, model: ContextualNeuMF) -> None:
        """Serve and learn ``model`` from now on: a new model version."""
        with self.lock:
            self.model = model
            self.version += 1
            self.retrains_completed += 1

    def take_refit(self) -> ModelBase | None:
        """The refit of ``start_retrain(swap=False)`` once it is done (then none until the
        next); a refit that failed gives None and may be started again."""
        with self.lock:
            if self._refit is not None and self._retrain is not None and self._retrain.ready:
                self._finish_retrain()
            if self._refit is None or self._refit.base is None:
                return None
            base, self._refit = self._refit.base, None
            return base

    def close(self) -> None:
        """Stop a running retrain (its work is dropped); the learner stays usable."""
        with self.lock:
            retrain, self._retrain = self._retrain, None
            self._refit = None
        if retrain is not None:
            retrain.cancel()
            self._restore_threads()

    def _restore_threads(self) -> None:
        if self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None

    def poll_retrain(self) -> bool:
        """Swap in a retrain that finished while no events came; True if one was."""
        with self.lock:
            if self._retrain is None or not self._retrain.ready:
                return False
            version = self.version
            self._finish_retrain()
            return self.version != version

    def wait_for_retrain(self) -> None:
        """Block until a running retrain is swapped in (the end of a stream, tests)."""
        with self.lock:
            if self._retrain is not None:
                self._finish_retrain()

    # ------------------------------------------------------------------------- scoring

    def _scored(self, batch: EventBatch) -> _Scored:
        # The evaluator asks for ranking scores and rating predictions of the same batch before
        # learning it: build its inputs, and read its contexts, once.
        state = (self.events_learned, self.version)
        cached = self._scoring_cache
        if cached is not None and cached.batch is batch and cached.state == state:
            return cached
        users, items = self.features.rows(batch)
        inputs = self.features.inputs(batch, users, items, self.device, with_exclusions=False)
        user_vectors, ratings = self.model.score_rows(inputs)
        self._scoring_cache = _Scored(batch, state, inputs, user_vectors, ratings)
        return self._scoring_cache

    def rank_scores(self, query: RankingQuery) -> torch.Tensor:
        """Scores of the catalogue for some rows of a batch (the evaluator's protocol)."""
        with self.lock:
            scored = self._scored(query.batch)
            rows = torch.as_tensor(query.rows, device=self.device)
            vectors, prior = scored.user_vectors[rows], scored.inputs.popularity_prior
            catalog_rows = torch.as_tensor(
                self.features.items.lookup(query.catalog_ids), device=self.device
            )
            # Items the model never learned (new in this batch) score as an unseen item would.
            if in_row_order(catalog_rows, self.model.n_items):
                return self.model.item_scores(vectors, prior, n_columns=len(catalog_rows))
            return on_catalogue(self.model.item_scores(vectors, prior), catalog_rows)

    def predict_ratings(self, batch: EventBatch) -> npt.NDArray[np.float32]:
        """Predicted rating of each event of ``batch``, row j seeing only events before j."""
        with self.lock:
            return self._scored(batch).ratings.cpu().numpy()

    def serving_state(
        self, user_ids: npt.ArrayLike, k: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], list[UserState]]:
        """Top-``k`` lists (seen items excluded) and :class:`UserState` of each user, computed
        together: what the trainer publishes for the users a batch touched."""
        users = np.asarray(user_ids, dtype=np.int64)
        with self.lock:
            inputs = self.features.serving_inputs(users, self.device, with_exclusions=True)
            vectors = self.model.user_vectors(inputs)
            scores = self.model.item_scores(vectors, inputs.popularity_prior)
            mask = torch.ones_like(scores, dtype=torch.bool)
            # Serving inputs give every user a group of its own: groups are rows here.
            if len(inputs.excluded_groups):
                mask[inputs.excluded_groups, inputs.excluded_items] = False
            columns, values = top_k(scores, mask, k)
            item_ids = self.features.items.ids
            ids = np.where(
                columns.cpu().numpy() >= 0, item_ids[columns.clamp(min=0).cpu().numpy()], -1
            )
            rows = inputs.excluded_groups.cpu().numpy()
            seen = item_ids[inputs.excluded_items.cpu().numpy()]
            vectors_np = vectors.cpu().numpy()
            states = [
                UserState(int(user), vectors_np[j], seen[rows == j], self.version)
                for j, user in enumerate(users)
            ]
        return ids, values.cpu().numpy(), states

    def snapshot(self, list_length: int = 1_000) -> ModelSnapshot:
        """The model frozen for serving: item vectors, score offsets and cold-start lists."""
        with self.lock:
            features = self.features
            n = self.model.n_items
            inputs = features.serving_inputs(
                np.zeros(0, np.int64), self.device, with_exclusions=False
            )
            offsets = (
                (
                    self.model.item_bias.active()[:, 0]
                    + inputs.popularity_prior[:n] @ self.model.dense.prior_weight
                )
                .detach()
                .cpu()
                .numpy()
            )
            ids = features.items.ids.copy()
            decayed = features.popularity.counts_of(ids)
            return ModelSnapshot(
                version=self.version,
                created_at=time.time(),
                item_ids=ids,
                item_vectors=self.model.item_embedding.active().detach().cpu().numpy().copy(),
                item_offsets=offsets.astype(np.float32),
                popular=ids[np.argsort(-offsets, kind="stable")[:list_length]],
                trending=ids[np.argsort(-decayed, kind="stable")[:list_length]],
            )

    # --------------------------------------------------------------------- persistence

    def state_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "config": self.config,
                "model": self.model.state_dict(),
                "features": self.features.state_dict(),
                "replay": self.replay.state_dict(),
                "version": self.version,
                "events_learned": self.events_learned,
                "retrains_completed": self.retrains_completed,
                "steps_skipped": self.steps_skipped,
                "events_at_last_retrain": self._events_at_last_retrain,
            }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with self.lock:
            self.features.load_state_dict(state["features"])
            self.model.load_state_dict(state["model"])
            self.replay.load_state_dict(state["replay"], self.device)
            self.version = int(state["version"])
            self.events_learned = int(state["events_learned"])
            self.retrains_completed = int(state["retrains_completed"])
            self.steps_skipped = int(state.get("steps_skipped", 0))
            self._events_at_last_retrain = int(state["events_at_last_retrain"])
