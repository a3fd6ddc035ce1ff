"""Provide a real Kafka broker and a real Redis server for the test suite.

This is the one place that decides where integration tests get Kafka and Redis from, so
that CI, ``run`` and a bare ``pytest`` all behave the same way. Each service is chosen
independently, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` are set: use them, start nothing.
2. A Docker engine answers a ping: start containers with testcontainers.
3. Otherwise start local processes: Apache Kafka (KRaft, single node) from its Maven
   Central jars, cached in ``~/.cache/recsys-stream/kafka-<version>/libs``, and Debian's
   ``redis-server`` (installed with apt-get when missing).

Whatever is started here is stopped here: at the end of ``run``, at the end of the
``provide_*`` context managers, on failure, on Ctrl-C and on SIGTERM. Nothing that this
package did not start is ever signalled. Logs live in ``.cache/test-services/``.

Command line (from the repository root)::

    python -m scripts.test_services run -- pytest -m integration
    eval "$(python -m scripts.test_services start)"   # ...later: ... stop

Python API (used by ``tests/conftest.py``): ``provide_kafka()``, ``provide_redis()`` and
``provide_services()`` are context managers.

For fault injection, ``local_kafka()`` and ``local_redis()`` start a private server as local
processes (whatever the variables say and whether Docker answers) and yield its handle,
``LocalKafka`` (``.bootstrap_servers``) or ``LocalRedis`` (``.url``): ``stop()`` (SIGTERM),
``kill()`` (SIGKILL) and ``start()`` (waits until ready) act on the same port and the same
data directory, so a broker started again keeps its topics and committed offsets (Redis,
in memory only, starts again empty). On exit the server is stopped and its data removed.

Only the standard library is imported at module level, so ``--help`` and ``stop`` are
instant; kafka-python, redis, docker and testcontainers are imported where they are used.
"""

from ._common import KAFKA_ENV, REDIS_ENV, ServiceError
from ._provide import Services, provide_kafka, provide_redis, provide_services
from .kafka import LocalKafka, local_kafka
from .redis import LocalRedis, local_redis

__all__ = [
    "KAFKA_ENV",
    "REDIS_ENV",
    "LocalKafka",
    "LocalRedis",
    "ServiceError",
    "Services",
    "local_kafka",
    "local_redis",
    "provide_kafka",
    "provide_redis",
    "provide_services",
]
