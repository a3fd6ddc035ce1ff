"""Where tests find a real Kafka and a real Redis.

`python -m scripts.test_services run -- pytest ...` (what `make test` and CI run) exports
KAFKA_BOOTSTRAP_SERVERS and REDIS_URL, and these fixtures simply hand them over. When pytest is
run directly without them, the same package provisions the missing service (Docker when an
engine answers, else local processes) and stops it when the session ends. The fixtures are lazy:
`pytest tests/unit` never starts anything, and a Redis-only test never starts Kafka.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.test_services import provide_kafka, provide_redis


@pytest.fixture(scope="session")
def kafka_bootstrap_servers() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a broker started for this session."""
    with provide_kafka() as bootstrap_servers:
        yield bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL if set, else a Redis server started for this session."""
    with provide_redis() as url:
        yield url
