"""Docker mode: Kafka and Redis containers started with testcontainers.

docker and testcontainers are imported where they are used, so that the command line's
``--help`` and ``stop`` stay instant and a machine without them still gets local processes.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._common import READY_TIMEOUT_S, _say, _Started
from .kafka import _wait_for_kafka

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

# Kafka: the image testcontainers' KafkaContainer is built and tested for.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REDIS_IMAGE = "redis:7"


@dataclass
class _Container:
    """A container started through testcontainers, identified by id so that ``stop`` can
    remove it from another process."""

    name: str
    container_id: str

    def close(self) -> None:
        import docker

        client = docker.from_env()
        try:
            client.containers.get(self.container_id).remove(force=True, v=True)
            _say(f"removed {self.name} container {self.container_id[:12]}")
        except docker.errors.NotFound:
            pass
        finally:
            client.close()

    def to_state(self) -> dict[str, object]:
        return {"type": "container", "name": self.name, "container_id": self.container_id}


@functools.cache
def _docker_engine_answers() -> bool:
    """A docker CLI or SDK alone is not enough: the daemon has to answer a ping."""
    try:
        import docker
    except ImportError:
        return False
    try:
        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (docker.errors.DockerException, OSError):
        return False


def _configure_testcontainers(*, detached: bool) -> None:
    """Ryuk removes containers once their creator exits. That is the safety net we want,
    except for `start`, whose containers must outlive it (`stop` removes them)."""
    if detached:
        from testcontainers.core.config import testcontainers_config

        testcontainers_config.ryuk_disabled = True


@contextlib.contextmanager
def _recording(name: str, container: DockerContainer, started: list[_Started]) -> Iterator[None]:
    """Record a container being started even when its start-up wait fails, so it is removed."""
    from testcontainers.core.exceptions import ContainerStartException

    try:
        yield
    finally:
        with contextlib.suppress(ContainerStartException):
            started.append(_Container(name, container.get_container_id()))


def _kafka_in_docker(started: list[_Started]) -> str:
    from testcontainers.community.kafka import KafkaContainer

    began = time.monotonic()
    container = KafkaContainer(KAFKA_IMAGE).with_kraft()
    with _recording("kafka", container, started):
        container.start(timeout=int(READY_TIMEOUT_S))
    bootstrap_servers = container.get_bootstrap_server()
    _wait_for_kafka(bootstrap_servers, began + READY_TIMEOUT_S, lambda: None)
    elapsed = time.monotonic() - began
    _say(f"kafka docker {KAFKA_IMAGE} ready on {bootstrap_servers} in {elapsed:.1f} s")
    return bootstrap_servers


def _redis_in_docker(started: list[_Started]) -> str:
    from testcontainers.community.redis import RedisContainer

    began = time.monotonic()
    container = RedisContainer(REDIS_IMAGE)
    with _recording("redis", container, started):
        container.start()  # waits for PING itself
    host = container.get_container_host_ip()
    url = f"redis://{host}:{container.get_exposed_port(container.port)}/0"
    _say(f"redis docker {REDIS_IMAGE} ready at {url} in {time.monotonic() - began:.1f} s")
    return url
