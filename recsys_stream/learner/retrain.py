"""Periodic full retrains: a fresh model learned from the whole retained log, swapped in live.

Online learning sees each event once, in order; a full retrain revisits every retained event for
several epochs in shuffled mini-batches. It runs in a background thread on a snapshot of the
log-derived state while online learning goes on; every micro-batch learned online meanwhile is
queued (as events: the snapshot's features rebuild each batch's inputs, so the queue stays as
small as the events themselves), the new model catches up on that queue, and the learner swaps it
in between two batches, with a new model version. The retrained model has then learned every
event the old one had.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from recsys_stream.events import EventBatch
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.training import fit_stored_events
from recsys_stream.model import ContextualNeuMF
from recsys_stream.settings import RetrainConfig

log = logging.getLogger(__name__)


class BackgroundRetrain:
    """One retrain: started on a snapshot, fed the online batches, finished by the learner."""

    def __init__(
        self, snapshot: StreamFeatures, model: ContextualNeuMF, retrain: RetrainConfig, *, seed: int
    ) -> None:
        """Train ``model`` (fresh) on ``snapshot``, shuffling with ``seed``."""
        self.started_at = time.monotonic()
        self.snapshot_events = snapshot.sequences.n_events
        self._snapshot = snapshot
        self._model = model
        self._config = retrain
        self._seed = seed
        self._pending: deque[EventBatch] = deque()
        self._lock = threading.Lock()
        self._trained = threading.Event()
        self._cancelled = False
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._config.where != "inline":
            self._thread = threading.Thread(target=self._run, name="retrain", daemon=True)
            self._thread.start()
        else:
            self._run()

    def _run(self) -> None:
        try:
            learned = fit_stored_events(
                self._model,
                self._snapshot,
                epochs=self._config.epochs,
                batch_size=self._config.batch_size,
                seed=self._seed,
                should_stop=lambda: self._cancelled,
            )
            self._model.events_learned = learned
            # Catch up in the background too, so the final hand-over has little left to do.
            while not self._cancelled and self._catch_up_one():
                pass
        except BaseException as exc:  # a failed retrain must never stop online learning
            log.exception("retrain failed; the current model stays in service")
            self.error = exc
        finally:
            self._trained.set()

    def _catch_up_one(self) -> bool:
        with self._lock:
            if not self._pending:
                return False
            batch = self._pending.popleft()
        inputs, n_users, _ = self._snapshot.advance(batch, self._model.device)
        self._model.ensure_rows(n_users, self._snapshot.items.ids)
        self._model.learn(inputs)
        return True

    def record(self, batch: EventBatch) -> None:
        """Queue a batch the current model just learned online."""
        with self._lock:
            self._pending.append(batch)

    @property
    def ready(self) -> bool:
        """Trained (or failed); the learner may now :meth:`finish` without waiting long."""
        return self._trained.is_set()

    def finish(self) -> ContextualNeuMF | None:
        """Learn what is still queued and return the new model (None if the retrain failed)."""
        self._trained.wait()
        if self._thread is not None:
            self._thread.join()
        if self.error is not None:
            return None
        while self._catch_up_one():
            pass
        return self._model

    def cancel(self) -> None:
        self._cancelled = True
        self._trained.wait()
