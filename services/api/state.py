"""The per-app serving state: what the routes share, on ``app.state.serving``.

Everything lives on one :class:`Serving`, built by ``create_app``; there is no module-level
state, so any number of apps can live in one process. Besides the cache and the publisher, it
holds what lets the API degrade instead of failing when the cache (Redis) goes down:

- :class:`SnapshotKeeper`: the latest model snapshot this process read. It looks for a new
  version at most every ``refresh_s`` seconds, in a worker thread, so that reading and
  unpacking a large snapshot never stalls the event loop.
- :class:`RecentUsers`: an LRU of what was served recently per user (their state, or their
  cached list), enough to keep answering those users from the held snapshot.
- :class:`CacheBreaker`: after the cache fails once, requests skip it for ``retry_s`` seconds
  rather than each waiting out a socket timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from recsys_stream.serving import (
    CacheUnavailableError,
    EventPublisher,
    ModelSnapshot,
    ServingCache,
    UserRecommendations,
    UserState,
)
from recsys_stream.settings import ApiSettings
from services.api.errors import ApiError
from services.api.keys import KeyRing, RateLimiter
from services.api.telemetry import Telemetry

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
T = TypeVar("T")


class SnapshotKeeper:
    """The latest model snapshot this process read, refreshed when the cache has a newer one.

    :meth:`get` costs a clock read: only when ``refresh_s`` has passed does it start a check,
    and then in a worker thread while the request goes on with the snapshot held. Only while
    no snapshot is held do requests wait for a read under way.
    """

    def __init__(
        self,
        cache: ServingCache,
        breaker: CacheBreaker,
        telemetry: Telemetry,
        *,
        refresh_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self._cache = cache
        self._breaker = breaker
        self._telemetry = telemetry
        self._refresh_s = refresh_s
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._pending: Future[None] | None = None
        self._next_check = float("-inf")
        self._name: str | None = None
        self.current: ModelSnapshot | None = None

    async def get(self) -> ModelSnapshot | None:
        """The held snapshot, after starting a version check if one is due."""
        if self._clock() >= self._next_check and self._breaker.allows():
            self._next_check = self._clock() + self._refresh_s
            self._start_check()
        pending = self._pending
        if self.current is None and pending is not None and not pending.done():
            await asyncio.wrap_future(pending)
        return self.current

    def close(self) -> None:
        """Stop the worker thread (at shutdown); a later check starts a new one, as test
        clients run an app's startup and shutdown more than once."""
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False, cancel_futures=True)
                self._executor = None

    def _start_check(self) -> Future[None]:
        with self._lock:
            if self._pending is None or self._pending.done():
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="snapshot")
                self._pending = self._executor.submit(self._check)
            return self._pending

    def _check(self) -> None:
        try:
            name = self._cache.snapshot_name()
            if name is not None and name == self._name and self.current is not None:
                return
            snapshot = self._cache.snapshot()
            if snapshot is None:
                return
            self._name = name
            if self.current is not None and snapshot.version == self.current.version:
                return
            snapshot.recommend(None, 1)  # builds the id lookup here, not on the event loop
        except CacheUnavailableError:
            self._telemetry.cache_errors.inc()
            self._breaker.trip()
            return
        except Exception:
            # A snapshot that cannot be read (corrupt, or of another format) must not stop
            # the API: keep serving the one held, and say why in the log.
            logger.exception("could not load the model snapshot; keeping the one held")
            return
        self.current = snapshot


class CacheBreaker:
    """Skips the cache for ``retry_s`` seconds after it failed, then lets requests try again."""

    def __init__(self, retry_s: float, clock: Clock = time.monotonic) -> None:
        self._retry_s = retry_s
        self._clock = clock
        self._retry_at = float("-inf")

    def allows(self) -> bool:
        return self._clock() >= self._retry_at

    def trip(self) -> None:
        self._retry_at = self._clock() + self._retry_s


@dataclass(slots=True)
class Recent:
    """What this process last saw of one user."""

    state: UserState | None = None
    cached: UserRecommendations | None = None


class RecentUsers:
    """A bounded LRU of :class:`Recent` per user id; capacity 0 keeps nothing."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[int, Recent] = OrderedDict()

    def get(self, user_id: int) -> Recent | None:
        entry = self._entries.get(user_id)
        if entry is not None:
            self._entries.move_to_end(user_id)
        return entry

    def remember(
        self,
        user_id: int,
        *,
        state: UserState | None = None,
        cached: UserRecommendations | None = None,
    ) -> None:
        if self.capacity == 0:
            return
        entry = self._entries.get(user_id)
        if entry is None:
            entry = self._entries[user_id] = Recent()
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        else:
            self._entries.move_to_end(user_id)
        if state is not None:
            entry.state = state
        if cached is not None:
            entry.cached = cached

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class Serving:
    """Everything the routes of one app share (``app.state.serving``)."""

    settings: ApiSettings
    cache: ServingCache
    publisher: EventPublisher
    telemetry: Telemetry
    breaker: CacheBreaker
    snapshots: SnapshotKeeper
    recent: RecentUsers
    metadata: dict[int, dict[str, object]] = field(default_factory=dict)
    """Per item id, the ``title``/``year``/``genres`` fields merged into each item answered."""
    keys: KeyRing = field(init=False)
    """The API keys in force (rotated from ``credentials_path`` without a restart)."""
    limiter: RateLimiter = field(init=False)
    """``POST /events`` requests per key."""

    def __post_init__(self) -> None:
        self.keys = KeyRing(self.settings)
        self.limiter = RateLimiter(self.settings.events_rate_per_s, self.settings.events_burst)

    def cache_failed(self) -> None:
        """Note a failed cache read: count it and stop trying for a while."""
        self.telemetry.cache_errors.inc()
        self.breaker.trip()

    def read(self, action: Callable[[ServingCache], T]) -> T:
        """``action(cache)``, or 503 when the cache is unreachable (routes with no fallback)."""
        if self.breaker.allows():
            try:
                return action(self.cache)
            except CacheUnavailableError:
                self.cache_failed()
        raise ApiError(503, "cache_unavailable", "the serving cache cannot be reached")
