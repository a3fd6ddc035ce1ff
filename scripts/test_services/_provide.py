"""Choosing a mode per service, and the ``provide_*`` context managers built on it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from ._common import KAFKA_ENV, REDIS_ENV, _close_all, _say, _Started
from ._docker import (
    _configure_testcontainers,
    _docker_engine_answers,
    _kafka_in_docker,
    _redis_in_docker,
)
from ._processes import _on_free_ports, _sigterm_as_interrupt
from .kafka import _start_local_kafka
from .redis import _start_local_redis


@dataclass(frozen=True)
class Services:
    """Where the tests find Kafka and Redis."""

    kafka_bootstrap_servers: str
    redis_url: str

    def environment(self) -> dict[str, str]:
        """The variables that tests (and ``tests/conftest.py``) read."""
        return {KAFKA_ENV: self.kafka_bootstrap_servers, REDIS_ENV: self.redis_url}


def _kafka(started: list[_Started], *, detached: bool = False) -> str:
    if configured := os.environ.get(KAFKA_ENV):
        _say(f"kafka from {KAFKA_ENV}={configured} (not started here)")
        return configured
    if _docker_engine_answers():
        _configure_testcontainers(detached=detached)
        return _kafka_in_docker(started)
    return _on_free_ports(_start_local_kafka, started).bootstrap_servers


def _redis(started: list[_Started], *, detached: bool = False) -> str:
    if configured := os.environ.get(REDIS_ENV):
        _say(f"redis from {REDIS_ENV}={configured} (not started here)")
        return configured
    if _docker_engine_answers():
        _configure_testcontainers(detached=detached)
        return _redis_in_docker(started)
    return _on_free_ports(_start_local_redis, started).url


@contextlib.contextmanager
def provide_kafka() -> Iterator[str]:
    """Yield Kafka bootstrap servers; stop the broker on exit if it was started here."""
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            yield _kafka(started)
        finally:
            _close_all(started)


@contextlib.contextmanager
def provide_redis() -> Iterator[str]:
    """Yield a Redis URL; stop the server on exit if it was started here."""
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            yield _redis(started)
        finally:
            _close_all(started)


@contextlib.contextmanager
def provide_services() -> Iterator[Services]:
    """Yield both services; stop on exit whatever was started here."""
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            redis_url = _redis(started)  # first: cheap, and it fails fast if it cannot start
            yield Services(kafka_bootstrap_servers=_kafka(started), redis_url=redis_url)
        finally:
            _close_all(started)
