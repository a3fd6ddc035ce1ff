"""A full retrain in a process of its own, so that it does not starve online learning.

A retrain in a thread of the learner's process shares its interpreter (the GIL) and all of
its torch threads: on two cores online learning fell from ~14k to ~5k events/s while one ran.
Here the retrain runs in a child process with ``RetrainConfig.threads`` torch threads, and the
learner keeps the other cores (it lowers its own torch threads while a retrain runs).

The protocol through the pipe: the learner sends the snapshot of the log (its features' state)
and the model to train; then every micro-batch it learns online (its events: the child
rebuilds their inputs from its own copy of the features); the child
trains on the snapshot, says ``trained``, learns the queued batches as they come (saying how
many it has learned whenever it has caught up with its pipe), and on ``finish`` returns the
model's state once it learned everything sent before.

The learner swaps the new model in once the child has caught up (at most
``_CAUGHT_UP_BATCHES`` behind), not as soon as it is trained: the batches learned online during
a long fit are the child's backlog, and ``finish`` waits for all of it. On a 60k-item
catalogue that wait had stopped online learning for ~5 s at each swap. A child that cannot
catch up (online learning as fast as it is) is finished anyway once as many batches again
have come as its backlog was when it was trained.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import pickle
import queue
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import torch

from recsys_stream.events import EventBatch
from recsys_stream.learner.allocator import retain_freed_memory
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.training import fit_stored_events
from recsys_stream.model import ContextualNeuMF
from recsys_stream.settings import RetrainConfig

__all__ = ["CatchUp", "ProcessRetrain"]

log = logging.getLogger(__name__)

_CAUGHT_UP_BATCHES = 1
"""A child at most this many batches behind online learning is swapped in: ``finish`` then
waits for about one step of the child."""


@dataclass
class CatchUp:
    """When a trained retrain may be swapped in: once its child is at most
    ``_CAUGHT_UP_BATCHES`` behind the batches sent to it, or, for a child that cannot catch
    up, once as many batches again have been sent as it was behind when it was trained.

    >>> catch_up = CatchUp()
    >>> catch_up.sent = 6  # learned online while the child fitted
    >>> catch_up.trained()
    >>> catch_up.due, catch_up.backlog
    (False, 6)
    >>> catch_up.learned(5)
    >>> catch_up.due
    True
    """

    sent: int = 0
    """Batches sent to the child."""
    learned_by_child: int = 0
    """Of those, what the child last said it had learned."""
    deadline: int | None = None
    """Once trained: due when this many batches have been sent, caught up or not."""

    @property
    def backlog(self) -> int:
        return self.sent - self.learned_by_child

    def trained(self) -> None:
        self.deadline = self.sent + self.backlog

    def learned(self, count: int) -> None:
        self.learned_by_child = count

    @property
    def due(self) -> bool:
        if self.deadline is None:
            return False
        return self.backlog <= _CAUGHT_UP_BATCHES or self.sent >= self.deadline


class ProcessRetrain:
    """One retrain in a child process; the same interface as
    :class:`~recsys_stream.learner.retrain.BackgroundRetrain`."""

    def __init__(
        self,
        features: StreamFeatures,
        model: ContextualNeuMF,
        retrain: RetrainConfig,
        *,
        seed: int,
        retained_memory_mb: int = 0,
    ) -> None:
        """Retrain ``model`` (fresh) on what ``features`` hold now (copied at once); the child
        keeps ``retained_memory_mb`` of freed memory (:func:`retain_freed_memory`)."""
        self.snapshot_events = features.sequences.n_events
        self._model = model
        self._config = retrain
        self._seed = seed
        context = multiprocessing.get_context("spawn")
        self._connection, self._child_end = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_train,
            args=(self._child_end, retrain.threads, retained_memory_mb),
            name="recsys-retrain",
            daemon=True,
        )
        self._outbox: queue.Queue[bytes | tuple[Any, ...] | None] = queue.Queue()
        # Pickled now: the features go on changing while the sender thread would pickle them.
        self._outbox.put(
            _pickle(
                (
                    features.state_dict(),
                    _features_config(features),
                    model.config,
                    str(model.device),
                    model.relevance_threshold,
                    seed,
                    retrain,
                )
            )
        )
        # The child reads only between its steps: a thread sends, so that the learner never
        # waits on a full pipe.
        self._sender = threading.Thread(target=self._send, name="retrain-sender", daemon=True)
        self._catch_up = CatchUp()
        self.error: BaseException | None = None

    def start(self) -> None:
        try:
            self._process.start()
        except Exception as exc:  # no process (resources, a spawn refused): no retrain
            self._child_end.close()
            self._fail(RuntimeError(f"the retrain process did not start ({exc!r})"))
            return
        self._child_end.close()  # the child holds its own: EOF here once it is gone
        self._sender.start()

    def _send(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                _send(self._connection, message)
            except (OSError, EOFError):
                return  # the child is gone: finish() and ready report it

    def record(self, batch: EventBatch) -> None:
        """Queue a batch the current model just learned online (the new one learns it too).

        The events travel, not the model's inputs: the child rebuilds those from its own copy
        of the features. An input batch carries catalogue-sized and history-sized tensors
        (~1 MB on a 60k-item catalogue), and a retrain over millions of events reads its pipe
        only after minutes of fitting: queued inputs had grown to 23 GB at 8M events."""
        if self.error is None:
            self._outbox.put(("batch", batch))
            self._catch_up.sent += 1

    @property
    def backlog(self) -> int:
        """Batches sent that the child had not learned when it last said."""
        return self._catch_up.backlog

    @property
    def ready(self) -> bool:
        """Trained on the snapshot and caught up with the batches learned online since (or
        failed): :meth:`finish` will not wait long."""
        try:
            while self.error is None and self._connection.poll():
                self._read(_receive(self._connection))
        except (OSError, EOFError) as exc:
            self._fail(self._gone(exc))
        return self.error is not None or self._catch_up.due

    def _read(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "trained":
            self._catch_up.trained()
        elif kind == "learned":
            self._catch_up.learned(message[1])
        else:
            self._fail(RuntimeError(message[1]))

    def wait_until_ready(self, timeout: float = math.inf) -> bool:
        """Wait at most ``timeout`` seconds for :attr:`ready`; whether it is."""
        deadline = time.monotonic() + timeout
        while not self.ready:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._connection.poll(min(left, 1.0))
        return True

    def finish(self) -> ContextualNeuMF | None:
        """The retrained model, having learned every batch sent (None if the retrain failed)."""
        self.wait_until_ready()
        if self.error is not None:
            return None
        self._outbox.put(("finish",))
        self._outbox.put(None)
        try:
            while (message := _receive(self._connection))[0] == "learned":
                pass  # progress said before the child read ``finish``
            kind, state = message
        except (OSError, EOFError) as exc:
            self._process.join(30)
            self._fail(self._gone(exc))
            return None
        finally:
            self._process.join(30)
        if kind != "model":
            self._fail(RuntimeError(state))
            return None
        self._model.load_state_dict(state)
        return self._model

    def cancel(self) -> None:
        self._outbox.put(None)
        if self._process.pid is None:  # never started
            self._connection.close()
            return
        self._process.kill()
        self._process.join(30)
        # Killed, the child breaks the pipe under a send in progress; the sender then returns,
        # and only after that may the connection close (closing under it is a crash).
        if self._sender.is_alive():
            self._sender.join(30)
        self._connection.close()

    def _gone(self, exc: BaseException) -> RuntimeError:
        """Why the pipe broke, in words: an EOF says nothing by itself."""
        self._process.join(5)
        code = self._process.exitcode
        ended = "is still running" if code is None else f"ended with exit code {code}"
        return RuntimeError(f"the retrain process {ended} ({type(exc).__name__}: {exc})")

    def _fail(self, exc: BaseException) -> None:
        log.error("retrain failed; the current model stays in service: %s", exc)
        self.error = exc
        if self._process.is_alive():
            self._process.kill()


def _pickle(message: tuple[Any, ...]) -> bytes:
    # Plain pickle copies tensors by value; ``Connection.send`` would share their storage
    # through files that may be gone by the time the other side opens them.
    return pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)


def _send(connection: Connection, message: bytes | tuple[Any, ...]) -> None:
    connection.send_bytes(message if isinstance(message, bytes) else _pickle(message))


def _receive(connection: Connection) -> Any:
    return pickle.loads(connection.recv_bytes())


def _features_config(features: StreamFeatures) -> dict[str, Any]:
    return {
        "context_length": features.context_length,
        "popularity_half_life_days": features.popularity.half_life_days,
        "popularity_horizons_days": features.popularity_horizons_days,
        "item_shrinkage": features.statistics.item_shrinkage,
        "user_shrinkage": features.statistics.user_shrinkage,
    }


def _train(connection: Connection, threads: int, retained_memory_mb: int) -> None:
    """The child: fit the snapshot, then learn the online batches until ``finish``."""
    # A terminal's Ctrl-C reaches the whole process group: the parent cancels its retrain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    retain_freed_memory(retained_memory_mb)
    try:
        state, features_config, model_config, device, relevance, seed, retrain = _receive(
            connection
        )
        features = StreamFeatures(**features_config)
        features.load_state_dict(state)
        model = ContextualNeuMF(model_config, device, seed=seed, relevance_threshold=relevance)
        model.events_learned = fit_stored_events(
            model, features, epochs=retrain.epochs, batch_size=retrain.batch_size, seed=seed
        )
        del state
        _send(connection, ("trained",))
        learned = 0
        while True:
            message = _receive(connection)
            if message[0] == "finish":
                _send(connection, ("model", model.state_dict()))
                return
            inputs, n_users, _ = features.advance(message[1], model.device)
            model.ensure_rows(n_users, features.items.ids)
            model.learn(inputs)
            learned += 1
            if not connection.poll():  # caught up with what the learner has sent so far
                _send(connection, ("learned", learned))
    except (EOFError, OSError):
        return  # the learner is gone, or cancelled the retrain
    except BaseException as exc:  # reported to the learner, which keeps its current model
        log.exception("retrain failed")
        _send(connection, ("failed", repr(exc)))
