"""The trainer's HTTP endpoints: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

They are served by a small threaded server of the standard library, off the Faust event loop:
a scrape or a probe never waits for a batch, and a stuck event loop is seen (``/healthz``
answers 503) rather than hidden.

- ``/healthz`` (liveness): the event loop has ticked recently. Restarting a trainer whose loop
  is stuck is the cure; restarting one whose Kafka is away is not, so Kafka is not checked.
- ``/readyz`` (readiness): the checkpoint is restored, the consumer has its partitions, the loop
  ticks, and the last checkpoint write did not fail.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Health:
    """What the probes answer: liveness, and the checks behind readiness."""

    alive: bool
    checks: dict[str, bool]

    @property
    def ready(self) -> bool:
        return self.alive and all(self.checks.values())


class TrainerHttpServer:
    """Serves ``metrics()`` and ``health()`` on ``host:port`` in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        metrics: Callable[[], bytes],
        health: Callable[[], Health],
    ) -> None:
        handler = _handler(metrics, health)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="trainer-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The bound port (the configured one, or the one chosen for port 0)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        host, port = self._server.server_address[:2]
        log.info("trainer HTTP endpoints on http://%s:%d/metrics", host, port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    metrics: Callable[[], bytes], health: Callable[[], Health]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._answer(HTTPStatus.OK, metrics(), CONTENT_TYPE_LATEST)
                return
            if path in ("/healthz", "/readyz"):
                state = health()
                body: dict[str, object]
                if path == "/healthz":
                    ok, body = state.alive, {"status": "ok" if state.alive else "stuck"}
                else:
                    ok = state.ready
                    body = {"status": "ready" if ok else "unready", "checks": state.checks}
                status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
                self._answer(status, orjson.dumps(body), "application/json")
                return
            error = {"error": {"status": 404, "code": "not_found", "message": f"no {path}"}}
            self._answer(HTTPStatus.NOT_FOUND, orjson.dumps(error), "application/json")

        def _answer(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes and scrapes every few seconds: not worth a log line each."""

    return Handler
