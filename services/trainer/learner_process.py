"""The learner in a process of its own, fed by the Faust side through a pipe.

The Faust process only moves bytes and offsets: it takes messages from Kafka, hands them to
this process, sends dead letters, and acknowledges what is durable. Everything CPU-bound
(decoding, evaluating, learning, publishing to Redis, checkpointing) runs here, on an
interpreter whose GIL the event loop does not share: Faust's per-message work (~100 µs a
message in its conductor and stream iterator) and the learner's no longer take turns.

The protocol is request and reply, one at a time per request id:

- ``handle(messages)``: learn what is new, checkpoint if due; the reply carries the dead
  letters, each message's count of learned events, the learner's status and the **durable
  positions**: per partition, the offset of the next message the last checkpoint on disk does
  not hold. The Faust side acknowledges (lets Kafka commit) only offsets below them.
- ``tick()``: swap in a retrain that finished, checkpoint if due (a quiet topic still gets its
  new model served and its tail checkpointed); the status.
- ``close()``: a final checkpoint, then the process exits.

A checkpoint write that fails (a full or broken disk) leaves the durable positions where they
were; it is tried again after ``checkpoint_retry_s``, doubling up to 30 s, and every reply
carries the failure in its status (``/metrics``, ``/readyz``). Once writes have failed for
``checkpoint_give_up_s``, replies carry ``fatal`` and the trainer stops with exit 1: what was
learned since the last checkpoint is learned again from Kafka after the restart.

If this process dies, every pending request fails with :class:`LearnerDiedError` and the
trainer stops (non-zero exit): nothing was acknowledged past the last checkpoint, so a restart
learns every event exactly once.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import itertools
import logging
import multiprocessing
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Final

from recsys_stream.serving import InMemorySink, OutputSink
from recsys_stream.settings import Settings
from services.logs import configure_logging
from services.trainer.group import GroupMember, scale_out_settings
from services.trainer.worker import CoreStatus, Handled, Message, TrainerCore

log = logging.getLogger(__name__)

START_TIMEOUT_S: Final = 600.0
"""Starting the process includes restoring a checkpoint, which can take a while when large."""
RETRY_MAX_S: Final = 30.0
"""Longest wait between two attempts at a failing checkpoint."""
QUIET_PUBLISH_S: Final = 5.0
"""When the stream is quiet, its last figures and snapshot are published at most this often
(a trickle of events would otherwise publish a whole snapshot at every tick)."""


class LearnerDiedError(RuntimeError):
    """The learner process exited or broke its pipe; what it held was not acknowledged."""


@dataclass(frozen=True)
class Reply:
    """What the learner process answers to one request."""

    status: CoreStatus
    durable: dict[str, int]
    """Per ``topic/partition``: the next offset the last checkpoint on disk does not hold."""
    handled: Handled | None = None
    checkpointed: bool = False
    """This request wrote a checkpoint."""
    error: str | None = None
    fatal: str | None = None
    """The learner cannot go on (its checkpoints have failed for too long): stop."""
    notes: dict[str, Any] = field(default_factory=dict)


class LearnerProcess:
    """The parent's handle on the learner process (its methods are awaited on the loop)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked locks
        self._connection, child = context.Pipe(duplex=True)
        # Not a daemon: it starts retrains in processes of its own (daemons may not).
        self._process = context.Process(
            target=_serve, args=(child, settings), name="recsys-learner"
        )
        self._child_end = child
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="learner-pipe")
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dead: LearnerDiedError | None = None
        self.initial: Reply | None = None

    def start(self) -> Reply:
        """Start the process and wait (blocking) until it restored its checkpoint."""
        self._process.start()
        self._child_end.close()  # the child holds its own: EOF here once it is gone
        # Runs before multiprocessing joins its children at exit (atexit is last in, first
        # out): without it, a trainer leaving without close() would wait on the child forever.
        atexit.register(self._abandon)
        if not self._connection.poll(START_TIMEOUT_S):
            raise LearnerDiedError("the learner process did not start")
        try:
            _, reply = self._connection.recv()
        except (EOFError, OSError) as exc:
            raise LearnerDiedError(f"the learner process failed to start ({exc})") from exc
        assert isinstance(reply, Reply)
        self.initial = reply
        return reply

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def alive(self) -> bool:
        return self._dead is None and self._process.is_alive()

    def _abandon(self) -> None:
        """At exit without :meth:`close`: the child stops (it acknowledged nothing new)."""
        if self._process.is_alive():
            self._connection.close()  # the child reads EOF and returns
            self._process.join(10)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(10)

    async def handle(self, messages: list[Message], consumer_lag: int | None) -> Reply:
        return await self._request("handle", (messages, consumer_lag))

    async def tick(self) -> Reply:
        return await self._request("tick", None)

    async def assign(self, sources: list[str]) -> Reply:
        """Partitions given to this worker (of a group): it holds the group's updates after."""
        return await self._request("assign", sources)

    async def revoke(self, sources: list[str]) -> Reply:
        """Partitions taken from this worker (of a group): its learning of them is published
        after."""
        return await self._request("revoke", sources)

    async def close(self) -> Reply:
        reply = await self._request("close", None)
        await asyncio.get_running_loop().run_in_executor(None, self._process.join, 60)
        self._sender.shutdown(wait=False)
        atexit.unregister(self._abandon)
        return reply

    async def _request(self, kind: str, payload: Any) -> Reply:
        if self._dead is not None:
            raise self._dead
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
            threading.Thread(target=self._read, name="learner-replies", daemon=True).start()
        request = next(self._ids)
        future: asyncio.Future[Reply] = loop.create_future()
        with self._lock:
            self._pending[request] = future
        # Sent from a thread: a large batch must not block the event loop while the learner
        # is busy and the pipe full.
        await loop.run_in_executor(self._sender, self._connection.send, (kind, request, payload))
        return await future

    def _read(self) -> None:
        assert self._loop is not None
        while True:
            try:
                request, reply = self._connection.recv()
            except (EOFError, OSError) as exc:
                code = self._process.exitcode
                self._dead = LearnerDiedError(f"the learner process is gone (exit {code}): {exc}")
                with self._lock:
                    pending, self._pending = self._pending, {}
                for future in pending.values():
                    self._loop.call_soon_threadsafe(_fail, future, self._dead)
                return
            with self._lock:
                waiting = self._pending.pop(request) if request in self._pending else None
            if waiting is not None:
                self._loop.call_soon_threadsafe(_resolve, waiting, reply)


def _resolve(future: asyncio.Future[Reply], reply: Reply) -> None:
    if not future.done():
        future.set_result(reply)


def _fail(future: asyncio.Future[Reply], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


# ------------------------------------------------------------------------------ the child


def _sink(settings: Settings) -> OutputSink:
    if settings.trainer.sink == "redis":
        from services.cache.redis_cache import RedisCache

        return RedisCache(settings.redis)
    return InMemorySink()


def _serve(connection: Connection, settings: Settings) -> None:
    """The learner process: a :class:`TrainerCore` answering requests until ``close``."""
    # A Ctrl-C in a terminal reaches the whole process group; the trainer, not the learner,
    # decides when to stop, so that its final checkpoint is still written.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings)
    if settings.trainer.scale_out:
        settings = scale_out_settings(settings)
    core = TrainerCore(settings, _sink(settings))
    member = GroupMember(core, settings) if settings.trainer.scale_out else None
    if member is None:
        core.restore()
    else:
        member.restore()

    def positions() -> dict[str, int]:
        return member.durable() if member is not None else dict(core.positions)

    durable = positions()
    trainer = settings.trainer
    retry_at = 0.0
    backoff = trainer.checkpoint_retry_s

    def fatal() -> str | None:
        since = core.status().checkpoint.failing_since
        if since is not None and time.time() - since >= trainer.checkpoint_give_up_s:
            return f"checkpoints have failed for {time.time() - since:.0f} s"
        return None

    def status() -> CoreStatus:
        current = core.status()
        if member is None:
            return current
        return dataclasses.replace(current, group=member.status())

    def reply(**extra: Any) -> Reply:
        return Reply(status=status(), durable=dict(durable), fatal=fatal(), **extra)

    def checkpoint(*, now: bool = False) -> bool:
        """Write a checkpoint unless a failed one waits for its retry (``now``: regardless);
        True if written: the durable positions move up to what was learned."""
        nonlocal durable, retry_at, backoff
        if not now and time.monotonic() < retry_at:
            return False
        try:
            if member is None:
                core.save_checkpoint()
            else:
                member.checkpoint()
        except Exception as exc:
            failed = core.status().checkpoint
            log.error(
                "checkpoint write failed (%s, %d failures in all); nothing past the last "
                "checkpoint is acknowledged; trying again in %.1f s",
                failed.last_error or repr(exc),
                failed.failures,
                backoff,
                extra={"error": failed.last_error or repr(exc), "failures": failed.failures},
                exc_info=exc,
            )
            retry_at = time.monotonic() + backoff
            backoff = min(backoff * 2, RETRY_MAX_S)
            return False
        retry_at, backoff = 0.0, trainer.checkpoint_retry_s
        durable = positions()
        return True

    def exchange() -> None:
        """One of a group: apply what the others published, publish if due."""
        nonlocal durable
        if member is None:
            return
        member.poll()
        member.refit()
        if member.exchange_due():
            try:
                member.publish()
            except Exception as exc:  # kept, and sent first next time
                log.warning("publishing an update failed (%r); trying again", exc)
                return
            durable = positions()

    connection.send((None, reply()))
    busy = False  # batches came since the last tick
    quiet_published = 0.0
    waiting: list[tuple[str, int, Any]] = []
    while True:
        try:
            kind, request, payload = waiting.pop(0) if waiting else connection.recv()
        except (EOFError, OSError):
            if member is not None:
                member.close()
            return  # the Faust side is gone: nothing to acknowledge to anyone
        if kind == "handle":
            # Takes that queued while the learner was busy are learned together: under load
            # the micro-batches fill up (cheaper per event); when idle, each goes at once.
            takes = [(request, payload)]
            while len(waiting) == 0 and connection.poll(0):
                following = connection.recv()
                if following[0] != "handle":
                    waiting.append(following)
                    break
                takes.append((following[1], following[2]))
            messages = [message for _, (batch, _) in takes for message in batch]
            core.processor.consumer_lag = takes[-1][1][1]
            if member is None:
                handled = core.handle(messages)
            else:
                exchange()
                handled = member.handle(messages, between=exchange)
            busy = True
            wrote = core.checkpoint_due() and checkpoint()
            for (number, _), part in zip(takes, _split(handled, takes), strict=True):
                connection.send((number, reply(handled=part, checkpointed=wrote)))
        elif kind == "tick":
            core.processor.swap_in_retrain()  # one that finished while no events came
            exchange()
            if not busy and time.monotonic() - quiet_published >= QUIET_PUBLISH_S:
                core.processor.publish_when_quiet()
                quiet_published = time.monotonic()
            busy = False
            wrote = core.checkpoint_due() and checkpoint()
            connection.send((request, reply(checkpointed=wrote)))
        elif kind in ("assign", "revoke"):
            assert member is not None, "partitions are reported only when scaling out"
            try:
                if kind == "assign":
                    member.assign(payload)
                else:
                    member.revoke(payload)
            except Exception as exc:
                # Learning a partition without the group's updates, or giving one up with
                # learning that is in no update, would break exactly-once: stop instead.
                log.error("the %s of %s failed: %r", kind, payload, exc, exc_info=exc)
                connection.send((request, reply(error=repr(exc))))
                return
            durable = positions()
            connection.send((request, reply()))
        elif kind == "close":
            wrote = core.learned_since_checkpoint > 0 and checkpoint(now=True)
            core.close()
            if member is not None:
                member.close()
            connection.send((request, reply(checkpointed=wrote)))
            connection.close()
            return


def _split(handled: Handled, takes: list[tuple[int, tuple[list[Message], Any]]]) -> list[Handled]:
    """``handled`` of merged takes, back into one per take (in order)."""
    parts = []
    at = 0
    letters: dict[str, int] = {}
    for index, (_, (messages, _)) in enumerate(takes):
        for message in messages:
            letters[f"{message.source}@{message.offset}"] = index
    for index, (_, (messages, _)) in enumerate(takes):
        learned = handled.learned_per_message[at : at + len(messages)]
        at += len(messages)
        mine = [letter for letter in handled.dead_letters if letters.get(letter.source) == index]
        parts.append(Handled(sum(learned), mine, learned))
    return parts
