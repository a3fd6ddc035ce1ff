"""The Redis cache: the trainer's output sink and the API's serving cache, on one key layout.

Keys (every name starts with ``RECSYS_REDIS__KEY_PREFIX``, default ``recsys:``):

- ``topk:<user>``: JSON ``{user_id, item_ids, scores, model_version, updated_at}`` (a
  :class:`~recsys_stream.serving.UserRecommendations`); expires after ``top_k_ttl_s`` (7 days);
- ``user:<user>``: the user's serving state in :meth:`UserState.to_bytes
  <recsys_stream.serving.UserState.to_bytes>`'s binary layout (a header, the vector, the seen
  ids); ``user_state_ttl_s`` (30 days);
- ``snapshot:current``: the name of the current snapshot key;
- ``snapshot:<version>:<id>``: a model snapshot (npz: item vectors, offsets, cold-start lists);
  expires 10 minutes after it is replaced;
- ``metrics:latest``: JSON of the latest figures (:class:`~recsys_stream.report.LiveFigures`);
- ``metrics:series``: a list of JSON points (:class:`~recsys_stream.report.SeriesPoint`),
  oldest first, at most ``series_length``;
- ``dead_letters``: a list of the latest 1,000 dead letters (JSON, payload base64).

A snapshot is written whole under a new name, then ``snapshot:current`` is switched to it, so a
reader never sees half of one: it reads the name, then the bytes under that name (the previous
snapshot stays readable for 10 minutes). Memory is bounded by the expiries and the capped lists;
in production also set ``maxmemory`` with ``maxmemory-policy allkeys-lru`` (the lists are
refreshed on every batch, so eviction only drops idle users, whom the API then computes from
their state or serves the cold-start list). AUTH and TLS come with the URL:
``rediss://user:password@host:6380/0``.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any, TypeVar

import orjson
import redis
import redis.asyncio as redis_async
from redis.exceptions import RedisError

from recsys_stream.report import LiveFigures, SeriesPoint, StreamReport
from recsys_stream.serving import (
    CacheUnavailableError,
    DeadLetter,
    ModelSnapshot,
    UserRecommendations,
    UserState,
)
from recsys_stream.settings import RedisSettings

log = logging.getLogger(__name__)
T = TypeVar("T")
_OLD_SNAPSHOT_TTL_S = 600
_DEAD_LETTERS_KEPT = 1_000


class RedisCache:
    """Writes the trainer's outputs to Redis and reads them back for the API."""

    def __init__(self, settings: RedisSettings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.prefix = settings.key_prefix
        self.client = client or redis.Redis.from_url(
            settings.url,
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
            health_check_interval=30,
        )
        self._aclient: redis_async.Redis | None = None
        self._aclient_loop: asyncio.AbstractEventLoop | None = None

    def _key(self, *parts: object) -> str:
        return self.prefix + ":".join(str(part) for part in parts)

    # ---------------------------------------------------------------- the output sink

    def _write(self, what: str, action: Callable[[], None]) -> None:
        # The trainer keeps learning while Redis is away; readers fall back (see the API).
        try:
            action()
        except RedisError as exc:
            log.warning("Redis unavailable, %s not published: %s", what, exc)

    def publish_recommendations(
        self, lists: Sequence[UserRecommendations], states: Sequence[UserState]
    ) -> None:
        def write() -> None:
            pipe = self.client.pipeline(transaction=False)
            for entry in lists:
                pipe.set(
                    self._key("topk", entry.user_id),
                    # orjson writes a dataclass itself, 10x faster than through asdict's
                    # deep copy (the same bytes).
                    orjson.dumps(entry),
                    ex=self.settings.top_k_ttl_s,
                )
            for state in states:
                pipe.set(
                    self._key("user", state.user_id),
                    state.to_bytes(),
                    ex=self.settings.user_state_ttl_s,
                )
            pipe.execute()

        self._write("top-K lists", write)

    def publish_snapshot(self, snapshot: ModelSnapshot) -> None:
        def write() -> None:
            name = self._key("snapshot", snapshot.version, uuid.uuid4().hex[:12])
            self.client.set(name, snapshot.to_bytes())
            current = self._key("snapshot", "current")
            previous = _as_bytes(self.client.get(current))
            pipe = self.client.pipeline(transaction=True)
            pipe.set(current, name)
            if previous is not None:
                pipe.expire(previous.decode(), _OLD_SNAPSHOT_TTL_S)
            pipe.execute()

        self._write("model snapshot", write)

    def publish_metrics(self, report: StreamReport) -> None:
        live, point = report.live(), report.point()

        def write() -> None:
            series = self._key("metrics", "series")
            pipe = self.client.pipeline(transaction=True)
            pipe.set(self._key("metrics", "latest"), orjson.dumps(live.to_dict()))
            pipe.rpush(series, orjson.dumps(point.to_dict()))
            pipe.ltrim(series, -self.settings.series_length, -1)
            pipe.execute()

        self._write("metrics", write)

    def publish_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        def write() -> None:
            key = self._key("dead_letters")
            pipe = self.client.pipeline(transaction=False)
            for letter in letters:
                payload = base64.b64encode(letter.payload or b"").decode()
                pipe.lpush(
                    key,
                    orjson.dumps({**asdict(letter), "payload": payload, "failed_at": time.time()}),
                )
            pipe.ltrim(key, 0, _DEAD_LETTERS_KEPT - 1)
            pipe.execute()

        self._write("dead letters", write)

    # ---------------------------------------------------------------- the serving cache

    def _read(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except RedisError as exc:
            raise CacheUnavailableError(f"Redis unavailable: {exc}") from exc

    def _async_client(self) -> redis_async.Redis:
        # An asyncio client belongs to the loop it first ran on; test clients and servers may
        # start a new loop, so keep one client per loop.
        loop = asyncio.get_running_loop()
        if self._aclient is None or self._aclient_loop is not loop:
            self._aclient = redis_async.Redis.from_url(
                self.settings.url,
                socket_timeout=self.settings.socket_timeout_s,
                socket_connect_timeout=self.settings.socket_timeout_s,
                max_connections=256,
            )
            self._aclient_loop = loop
        return self._aclient

    async def _get(self, key: str) -> bytes | None:
        try:
            value = await self._async_client().get(key)
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(f"Redis unavailable: {exc}") from exc
        return _as_bytes(value)

    async def top_k(self, user_id: int) -> UserRecommendations | None:
        raw = await self._get(self._key("topk", user_id))
        return None if raw is None else _parse_list(user_id, raw)

    async def user_state(self, user_id: int) -> UserState | None:
        raw = await self._get(self._key("user", user_id))
        return None if raw is None else UserState.from_bytes(raw)

    def snapshot_name(self) -> str | None:
        """The key of the current snapshot: cheap to poll for a new version."""
        raw = self._get_bytes(self._key("snapshot", "current"))
        return None if raw is None else raw.decode()

    def snapshot(self) -> ModelSnapshot | None:
        for _ in range(3):  # the name can move on between the two reads; try again
            name = self.snapshot_name()
            if name is None:
                return None
            raw = self._get_bytes(name)
            if raw is not None:
                return ModelSnapshot.from_bytes(raw)
        return None

    def _get_bytes(self, key: str) -> bytes | None:
        return self._read(lambda: _as_bytes(self.client.get(key)))

    def metrics(self) -> LiveFigures | None:
        raw = self._get_bytes(self._key("metrics", "latest"))
        return None if raw is None else _parsed(raw, LiveFigures.from_dict)

    def metrics_series(self, limit: int) -> list[SeriesPoint]:
        key = self._key("metrics", "series")
        raw = self._read(lambda: self.client.lrange(key, -limit, -1))
        points = (_parsed(_as_bytes(point) or b"", SeriesPoint.from_dict) for point in raw)
        return [point for point in points if point is not None]

    def dead_letters(self, limit: int = 100) -> list[dict[str, object]]:
        raw = self._read(lambda: self.client.lrange(self._key("dead_letters"), 0, limit - 1))
        return [orjson.loads(letter) for letter in raw]

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except RedisError:
            return False


def _parse_list(user_id: int, raw: bytes) -> UserRecommendations | None:
    """A cached top-K list; None when it is not the expected shape (a miss: the user's state
    can still answer)."""
    try:
        entry = orjson.loads(raw)
        items, scores = entry["item_ids"], entry["scores"]
        version, updated_at = entry["model_version"], entry["updated_at"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    if (
        not isinstance(items, list)
        or not isinstance(scores, list)
        or len(items) != len(scores)
        or not isinstance(version, int)
        or not isinstance(updated_at, int | float)
    ):
        return None
    return UserRecommendations(user_id, items, scores, version, float(updated_at))


def _parsed(raw: bytes, parse: Callable[[dict[str, Any]], T]) -> T | None:
    """``parse`` of a JSON value, or None (logged) when it is not the expected shape, e.g.
    written by another version."""
    try:
        return parse(orjson.loads(raw))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        log.warning("ignoring a cached value of an unexpected shape: %r", exc)
        return None


def _as_bytes(value: object) -> bytes | None:
    """A value read with ``decode_responses=False`` (the client's default): bytes or None."""
    if value is None or isinstance(value, bytes):
        return value
    raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
