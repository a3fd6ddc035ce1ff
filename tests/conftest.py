"""Where tests find a real Kafka and a real Redis.

`python scripts/test_services.py run -- pytest ...` (what `make test` and CI run) exports
KAFKA_BOOTSTRAP_SERVERS and REDIS_URL, and these fixtures simply hand them over. When pytest is
run directly without them, the same script provisions the missing service (Docker when an engine
answers, else local processes) and stops it when the session ends. The fixtures are lazy:
`pytest tests/unit` never starts anything, and a Redis-only test never starts Kafka.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

TEST_SERVICES_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "test_services.py"


@functools.cache
def _test_services() -> ModuleType:
    """Load scripts/test_services.py from its path: scripts/ is neither a package nor installed."""
    spec = importlib.util.spec_from_file_location("recsys_test_services", TEST_SERVICES_SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def kafka_bootstrap_servers() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a broker started for this session."""
    with _test_services().provide_kafka() as bootstrap_servers:
        yield bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL if set, else a Redis server started for this session."""
    with _test_services().provide_redis() as url:
        yield url
