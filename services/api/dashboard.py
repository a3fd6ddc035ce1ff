"""The dashboard's server side: its state per app, the live view's figures, who may write.

- :class:`DashboardState` (``app.state.dashboard``): the catalogue, the rating history, the
  freshness of posted events, the series kept downsampled, and whether the page may write
  without a key (the embedded mode on loopback);
- :class:`FreshnessTracker`: for each event posted through this API, the time from its
  acceptance to the first list of its user computed after it (read from the cache), p50/p99;
- :func:`downsample`: a long metrics series cut to a few hundred points for a chart, every
  model change kept (the retrain markers);
- :func:`page_writes_allowed`: the one exception to the API key, for the embedded mode.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from starlette.requests import Request

from recsys_stream.events import RatingEvent
from recsys_stream.report import SeriesPoint
from recsys_stream.serving import CacheUnavailableError, ServingCache
from services.api.explorer import Catalogue, RatingHistory

__all__ = [
    "PAGE_HEADER",
    "UI_DIR",
    "DashboardState",
    "FreshnessTracker",
    "SeriesColumns",
    "WriteMode",
    "downsample",
    "page_writes_allowed",
]

UI_DIR = Path(__file__).parent / "ui"
"""The page's static files, shipped in the package (``package-data`` in pyproject)."""

PAGE_HEADER = "X-Recsys-Page"
"""Sent by the page with a write. A custom header makes a cross-site request need a CORS
preflight, which this API never grants: another site open in the browser cannot post ratings
to a loopback API through the user's browser."""

WriteMode = Literal["loopback", "key", "disabled"]

_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


def _is_loopback_address(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def page_writes_allowed(request: Request) -> bool:
    """A write from the page in the embedded mode: allowed only when the command that started
    the API said so, from a loopback peer, to a loopback host name (a DNS-rebound name is
    refused), with the page's header."""
    state: DashboardState | None = getattr(request.app.state, "dashboard", None)
    if state is None or not state.loopback_writes:
        return False
    if PAGE_HEADER not in request.headers:
        return False
    client = request.client
    if not _is_loopback_address(client.host if client else None):
        return False
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in _LOOPBACK_NAMES


class FreshnessTracker:
    """Post-to-served freshness: per accepted event, the cached list's ``updated_at`` minus
    the event's acceptance time, once a list computed after it appears.

    Events are checked lazily, when the dashboard asks, a bounded number per ask: no work per
    request on the hot routes. An event whose list has not changed after ``give_up_s`` counts
    as ``stale`` and is dropped.
    """

    def __init__(
        self, *, pending_max: int = 1_000, samples_max: int = 1_000, give_up_s: float = 120.0
    ) -> None:
        self._pending: deque[tuple[int, float]] = deque(maxlen=pending_max)
        self._samples: deque[float] = deque(maxlen=samples_max)
        self._give_up_s = give_up_s
        self._lock = threading.Lock()
        self.stale = 0

    def accepted(self, events: list[RatingEvent], accepted_at: float) -> None:
        with self._lock:
            self._pending.extend((event.user_id, accepted_at) for event in events)

    async def settle(self, cache: ServingCache, budget: int = 50) -> None:
        """Check up to ``budget`` pending events against the cache (oldest first)."""
        now = time.time()
        with self._lock:
            pending = [self._pending.popleft() for _ in range(min(budget, len(self._pending)))]
        waiting: list[tuple[int, float]] = []
        for user_id, accepted_at in pending:
            try:
                cached = await cache.top_k(user_id)
            except CacheUnavailableError:
                waiting.append((user_id, accepted_at))
                continue
            if cached is not None and cached.updated_at >= accepted_at:
                self._samples.append(cached.updated_at - accepted_at)
            elif now - accepted_at > self._give_up_s:
                self.stale += 1
            else:
                waiting.append((user_id, accepted_at))
        with self._lock:
            self._pending.extendleft(reversed(waiting))

    def figures(self) -> tuple[float | None, float | None, int]:
        """p50 and p99 in seconds (None before the first sample), and the sample count."""
        samples = np.asarray(self._samples)
        if not len(samples):
            return None, None, 0
        p50, p99 = np.percentile(samples, [50, 99])
        return float(p50), float(p99), len(samples)


@dataclass(frozen=True)
class SeriesColumns:
    """A metrics series as columns (one array per figure), as the charts draw it."""

    events: list[int]
    published_at: list[float]
    model_version: list[int]
    models: dict[str, dict[str, list[float | None]]]
    retrains: list[tuple[int, int]]
    """``(events, model_version)`` where the model version changed, over the whole series."""
    total_points: int
    events_per_second: float | None
    """Over the latest (up to) five points of the whole series."""


def downsample(points: Sequence[SeriesPoint], max_points: int) -> SeriesColumns:
    """At most ``max_points`` evenly spaced points, plus the first point of every model
    version (a retrain marker lands on its point) and the last point."""
    n = len(points)
    changes = [j for j in range(1, n) if points[j].model_version != points[j - 1].model_version]
    if n <= max_points:
        chosen = list(range(n))
    else:
        even = np.linspace(0, n - 1, max(2, max_points - len(changes))).round().astype(int)
        chosen = sorted({*even.tolist(), *changes[-max_points // 2 :], n - 1})
    picked = [points[j] for j in chosen]
    names = sorted({name for point in picked for name in point.models})
    models: dict[str, dict[str, list[float | None]]] = {}
    for name in names:
        rows = [
            point.models[name].to_dict(point.k) if name in point.models else {} for point in picked
        ]
        keys = sorted({key for row in rows for key in row})
        models[name] = {key: [_number(row.get(key)) for row in rows] for key in keys}
    return SeriesColumns(
        events=[p.events for p in picked],
        published_at=[p.published_at for p in picked],
        model_version=[p.model_version for p in picked],
        models=models,
        retrains=[(points[j].events, points[j].model_version) for j in changes],
        total_points=n,
        events_per_second=_rate(points[-5:]),
    )


def _rate(points: Sequence[SeriesPoint]) -> float | None:
    if len(points) < 2 or points[-1].published_at <= points[0].published_at:
        return None
    events = points[-1].events - points[0].events
    return events / (points[-1].published_at - points[0].published_at)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


@dataclass
class DashboardState:
    """Everything the dashboard's routes share (``app.state.dashboard``)."""

    catalogue: Catalogue
    history: RatingHistory
    freshness: FreshnessTracker = field(default_factory=FreshnessTracker)
    loopback_writes: bool = False
    """Set by ``simulate --serve``: the page may post ratings from loopback without a key."""
    series_key: tuple[float, int] | None = None
    """The latest report's ``published_at`` and the points asked when ``series`` was read."""
    series: SeriesColumns | None = None

    def write_mode(self, key_configured: bool) -> WriteMode:
        if self.loopback_writes:
            return "loopback"
        return "key" if key_configured else "disabled"
