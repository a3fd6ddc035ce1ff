"""Prometheus metrics of one app, in a registry of its own.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`, so several apps in one
process (tests, the benchmark) never clash over metric names. Request timing is a plain ASGI
middleware rather than Starlette's ``BaseHTTPMiddleware``, which would add a task and a memory
stream per request on the hot path; labelled children are looked up once and kept.

Figures that describe state rather than events (model version and age, hit ratio, consumer lag)
are computed when scraped, by a collector that asks the app for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
"""Seconds, dense around the 1-10 ms the cached path should take."""

UNMATCHED_ROUTE = "<unmatched>"
"""The route label of requests no route matched: raw paths would make unbounded labels."""


@dataclass(frozen=True, slots=True)
class ServingFigures:
    """What the collector reports about the model and the trainer, read at scrape time."""

    model_version: int | None = None
    model_created_at: float | None = None
    consumer_lag: float | None = None


class Telemetry:
    """The metrics of one app: request timing, recommendation sources, serving state."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "recsys_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template, method and status.",
            ("route", "method", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "recsys_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"),
            registry=self.registry,
        )
        self.recommendations = Counter(
            "recsys_recommendations",
            "Recommendation lists served, by source (cache = a hit; the others are misses).",
            ("source",),
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "recsys_cache_errors",
            "Reads of the serving cache that failed (the cache was unreachable).",
            registry=self.registry,
        )
        self._served: dict[str, int] = {}
        self._served_children: dict[str, Counter] = {}
        self._request_children: dict[tuple[str, str, int], tuple[Histogram, Counter]] = {}

    def track_state(self, figures: Callable[[], ServingFigures]) -> None:
        """Report, at each scrape, the serving state ``figures`` describes, and the hit ratio."""
        self.registry.register(_StateCollector(figures, self._served))

    def served(self, source: str) -> None:
        """Count one recommendation list answered from ``source``."""
        child = self._served_children.get(source)
        if child is None:
            child = self._served_children[source] = self.recommendations.labels(source)
        child.inc()
        self._served[source] = self._served.get(source, 0) + 1

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._request_children.get(key)
        if children is None:
            labels = (route, method, str(status))
            children = (self.request_latency.labels(*labels), self.requests.labels(*labels))
            self._request_children[key] = children
        children[0].observe(seconds)
        children[1].inc()

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, figures: Callable[[], ServingFigures], served: Mapping[str, int]) -> None:
        self._figures = figures
        self._served = served

    def describe(self) -> Iterable[Metric]:
        # Describing by collecting would read the cache at registration; the names are fixed.
        return ()

    def collect(self) -> Iterable[Metric]:
        total = sum(self._served.values())
        if total:
            yield _gauge(
                "recsys_cache_hit_ratio",
                "Share of recommendation lists served from the cache since start.",
                self._served.get("cache", 0) / total,
            )
        figures = self._figures()
        if figures.model_version is not None:
            yield _gauge(
                "recsys_model_version",
                "Version of the model snapshot this process holds.",
                figures.model_version,
            )
        if figures.model_created_at is not None:
            yield _gauge(
                "recsys_model_age_seconds",
                "Seconds since the snapshot this process holds was taken.",
                max(0.0, time.time() - figures.model_created_at),
            )
        if figures.consumer_lag is not None:
            yield _gauge(
                "recsys_consumer_lag",
                "Events in Kafka the trainer had not consumed, as of its latest report.",
                figures.consumer_lag,
            )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


class TelemetryMiddleware:
    """Times every HTTP request and records it under its route template."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry) -> None:
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            route: Any = scope.get("route")
            self.telemetry.observe_request(
                getattr(route, "path", UNMATCHED_ROUTE),
                scope["method"],
                status,
                time.perf_counter() - start,
            )
