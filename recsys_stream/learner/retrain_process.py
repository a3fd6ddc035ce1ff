"""A full retrain in a process of its own, so that it does not starve online learning.

A retrain in a thread of the learner's process shares its interpreter (the GIL) and all of
its torch threads: on two cores online learning fell from ~14k to ~5k events/s while one ran.
Here the retrain runs in a child process with ``RetrainConfig.threads`` torch threads, and the
learner keeps the other cores (it lowers its own torch threads while a retrain runs).

The protocol through the pipe: the learner sends the snapshot of the log (its features' state)
and the model to train; then every micro-batch it learns online (its events: the child
rebuilds their inputs from its own copy of the features); the child
trains on the snapshot, says ``trained``, learns the queued batches as they come, and on
``finish`` returns the model's state once it learned everything sent before.
"""

from __future__ import annotations

import logging
import multiprocessing
import pickle
import queue
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

import torch

from recsys_stream.events import EventBatch
from recsys_stream.learner.allocator import retain_freed_memory
from recsys_stream.learner.features import StreamFeatures
from recsys_stream.learner.training import fit_stored_events
from recsys_stream.model import ContextualNeuMF
from recsys_stream.settings import RetrainConfig

log = logging.getLogger(__name__)


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
        retained_memory_bytes: int = 0,
    ) -> None:
        """Retrain ``model`` (fresh) on what ``features`` hold now (copied at once); the child
        keeps ``retained_memory_bytes`` of freed memory (:func:`retain_freed_memory`)."""
        self.snapshot_events = features.sequences.n_events
        self._model = model
        self._config = retrain
        self._seed = seed
        context = multiprocessing.get_context("spawn")
        self._connection, self._child_end = context.Pipe(duplex=True)
        self._process = context.Process(
            target=_train,
            args=(self._child_end, retrain.threads, retained_memory_bytes),
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
        self._trained = False
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

    @property
    def ready(self) -> bool:
        """Trained on the snapshot (or failed): :meth:`finish` will not wait long."""
        if not self._trained and self.error is None:
            try:
                if self._connection.poll():
                    message = _receive(self._connection)
                    if message[0] == "trained":
                        self._trained = True
                    else:
                        self._fail(RuntimeError(message[1]))
            except (OSError, EOFError) as exc:
                self._fail(self._gone(exc))
        return self._trained or self.error is not None

    def finish(self) -> ContextualNeuMF | None:
        """The retrained model, having learned every batch sent (None if the retrain failed)."""
        while not self.ready:
            self._connection.poll(1.0)
        if self.error is not None:
            return None
        self._outbox.put(("finish",))
        self._outbox.put(None)
        try:
            kind, state = _receive(self._connection)
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


def _train(connection: Connection, threads: int, retained_memory_bytes: int) -> None:
    """The child: fit the snapshot, then learn the online batches until ``finish``."""
    # A terminal's Ctrl-C reaches the whole process group: the parent cancels its retrain.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    retain_freed_memory(retained_memory_bytes)
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
        while True:
            message = _receive(connection)
            if message[0] == "finish":
                _send(connection, ("model", model.state_dict()))
                return
            inputs, n_users, _ = features.advance(message[1], model.device)
            model.ensure_rows(n_users, features.items.ids)
            model.learn(inputs)
    except (EOFError, OSError):
        return  # the learner is gone, or cancelled the retrain
    except BaseException as exc:  # reported to the learner, which keeps its current model
        log.exception("retrain failed")
        _send(connection, ("failed", repr(exc)))
