"""API keys with names, rotated without a restart, and a rate limit per key.

**Keys.** ``RECSYS_API__API_KEY`` is one key, named ``default``. ``RECSYS_API__CREDENTIALS_PATH``
names more, and is read again every ``credentials_reload_s`` seconds, so that a key is added or
revoked without a restart:

- a **directory** (a Kubernetes Secret mounted as a volume): each file is one key, named by
  the file (the Secret's data key); the files Kubernetes keeps for its atomic updates
  (``..data``, names starting with a dot) are skipped;
- a **file**: one key a line, ``name: key`` (a bare key is named ``line-<n>``); blank lines and
  ``#`` comments are skipped.

A file that cannot be read keeps the keys last read (and says so in the log, once), so a
half-written update never locks every client out. A key is compared with each known one in
constant time (SHA-256 digests through :func:`hmac.compare_digest`, every key compared, no
early exit), and only its **name** is ever logged or counted; the key itself never leaves this
module.

**Rate limit.** ``POST /events`` takes ``events_rate_per_s`` requests a second per key, with
bursts of ``events_burst`` (a token bucket per key name); past it the answer is 429 with
``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from recsys_stream.settings import ApiSettings

__all__ = ["ApiKey", "KeyRing", "RateLimiter", "read_keys"]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key by its name and digest (the key itself is not kept)."""

    name: str
    digest: bytes

    def __repr__(self) -> str:
        return f"ApiKey({self.name!r})"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()


def read_keys(path: Path) -> list[ApiKey]:
    """The keys of a directory (one a file) or a file (one a line); raises ``OSError``."""
    keys: list[ApiKey] = []
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            secret = entry.read_text().strip()
            if secret:
                keys.append(ApiKey(entry.name, _digest(secret)))
        return keys
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        name, separator, secret = text.partition(":")
        if not separator:
            name, secret = f"line-{number}", text
        if secret.strip():
            keys.append(ApiKey(name.strip(), _digest(secret.strip())))
    return keys


class KeyRing:
    """The keys in force: ``api_key`` and those of ``credentials_path``, re-read when due."""

    def __init__(self, settings: ApiSettings, clock: Clock = time.monotonic) -> None:
        self._static = (
            [ApiKey("default", _digest(settings.api_key.get_secret_value()))]
            if settings.api_key is not None and settings.api_key.get_secret_value()
            else []
        )
        self._path = settings.credentials_path
        self._reload_s = settings.credentials_reload_s
        self._clock = clock
        self._lock = threading.Lock()
        self._from_file: list[ApiKey] = []
        self._next_read = float("-inf")
        self._failing = False

    def keys(self) -> list[ApiKey]:
        """Every key in force (the file read again if ``credentials_reload_s`` passed)."""
        if self._path is not None and self._clock() >= self._next_read:
            self._reload(self._path)
        return self._static + self._from_file

    def _reload(self, path: Path) -> None:
        with self._lock:
            if self._clock() < self._next_read:
                return
            self._next_read = self._clock() + self._reload_s
            try:
                found = read_keys(path)
            except OSError as exc:
                if not self._failing:
                    log.warning(
                        "cannot read the API keys at %s (%s); keeping the %d known",
                        path,
                        type(exc).__name__,
                        len(self._from_file),
                    )
                self._failing = True
                return
            self._failing = False
            before = {key.name for key in self._from_file}
            after = {key.name for key in found}
            if before != after or [k.digest for k in found] != [k.digest for k in self._from_file]:
                log.info(
                    "API keys from %s: %s",
                    path,
                    sorted(after),
                    extra={"added": sorted(after - before), "removed": sorted(before - after)},
                )
            self._from_file = found

    @property
    def configured(self) -> bool:
        return bool(self.keys())

    def identify(self, presented: str) -> str | None:
        """The name of the key ``presented`` is, or None; the same work whichever matches."""
        digest = _digest(presented)
        name: str | None = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.digest) and name is None:
                name = key.name
        return name


class RateLimiter:
    """A token bucket per key name: ``rate_per_s`` tokens a second, at most ``burst`` held;
    ``rate_per_s`` 0 lets everything through."""

    def __init__(self, rate_per_s: float, burst: int, clock: Clock = time.monotonic) -> None:
        self.rate_per_s = rate_per_s
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: str) -> float | None:
        """None if ``name`` may go now (a token taken), else the seconds until it may."""
        if self.rate_per_s <= 0:
            return None
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(name, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
            if tokens >= 1.0:
                self._buckets[name] = (tokens - 1.0, now)
                return None
            self._buckets[name] = (tokens, now)
            return (1.0 - tokens) / self.rate_per_s

    @staticmethod
    def retry_after(seconds: float) -> str:
        """The ``Retry-After`` header's value: whole seconds, at least 1."""
        return str(max(1, math.ceil(seconds)))
