"""Kafka: a single-node KRaft broker from Maven Central's jars, and when a broker is ready.

kafka-python is imported where it is used, so that the command line's ``--help`` and
``stop`` stay instant.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from string import Template

from ._common import (
    CACHE_ROOT,
    HOST,
    READY_TIMEOUT_S,
    SCRIPTS_DIR,
    ServiceError,
    _close_all,
    _require_tool,
    _say,
    _Started,
)
from ._processes import (
    _excerpt,
    _free_ports,
    _LocalServer,
    _log_path,
    _on_free_ports,
    _read_log,
    _sigterm_as_interrupt,
)

KAFKA_POM = SCRIPTS_DIR / "kafka" / "pom.xml"
KAFKA_PROPERTIES_TEMPLATE = SCRIPTS_DIR / "kafka" / "server.properties.template"
MAVEN_TIMEOUT_S = 900.0
KAFKA_PROBE_TOPIC = "test-services-probe"
# A test broker needs a quick start more than peak throughput: a small heap leaves room for
# the tests, and C1-only JIT with the serial GC keeps compiler and GC threads from competing
# with start-up on small CI machines (about 4.5 s instead of 8.5 s to ready on 2 cores).
KAFKA_JVM_OPTIONS = (
    "-Xms128m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)
# Brokers of local_kafka() only. After a SIGKILL, the restarted controller keeps the dead
# broker's registration until its session times out (9 s by default) and refuses the new one
# meanwhile (DUPLICATE_BROKER_REGISTRATION): a shorter session makes a restart after a kill
# about as quick as one after a stop. Shorter still risks fencing a busy broker.
RESTARTABLE_PROPERTIES: Mapping[str, object] = {
    "broker.heartbeat.interval.ms": 500,
    "broker.session.timeout.ms": 3000,
}
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# Its 300-line dump of every setting hides the interesting lines; the log starts with our
# server.properties instead.
log4j.logger.kafka.server.KafkaConfig=WARN
"""


def kafka_version() -> str:
    """The Kafka version is declared once, in scripts/kafka/pom.xml."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ElementTree.parse(KAFKA_POM).findtext("m:properties/m:kafka.version", None, namespace)
    if not version:
        raise ServiceError(f"{KAFKA_POM} does not declare <kafka.version>")
    return version.strip()


def _kafka_libs(version: str) -> Path:
    """The broker's jars, downloaded by Maven once per machine.

    Maven writes into a temporary sibling directory that is renamed into place only when
    complete, so an interrupted download is never mistaken for a usable one (and two
    concurrent first runs cannot corrupt each other: the second rename simply loses).
    """
    libs = CACHE_ROOT / f"kafka-{version}" / "libs"
    if libs.is_dir():
        return libs
    mvn = _require_tool("mvn", "install Maven (Debian: apt-get install maven)")
    libs.parent.mkdir(parents=True, exist_ok=True)
    log_path = _log_path(f"maven-kafka-{version}")
    _say(f"downloading Kafka {version} jars with Maven into {libs} (once per machine)")
    began = time.monotonic()
    download = Path(tempfile.mkdtemp(prefix="libs.partial-", dir=libs.parent))
    try:
        command = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(KAFKA_POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={download}",
        ]  # fmt: skip
        with log_path.open("ab") as log:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=MAVEN_TIMEOUT_S,
                check=False,
            )
        if result.returncode != 0 or not (download / f"kafka_2.13-{version}.jar").is_file():
            raise ServiceError(
                f"Maven could not fetch Kafka {version} (exit {result.returncode}); "
                f"log {log_path}:\n{_excerpt(_read_log(log_path))}"
            )
        try:
            download.rename(libs)
        except OSError:
            if not libs.is_dir():
                raise
    finally:
        shutil.rmtree(download, ignore_errors=True)
    size_mb = sum(p.stat().st_size for p in libs.iterdir()) / 1e6
    _say(f"downloaded {size_mb:.1f} MB of jars in {time.monotonic() - began:.1f} s")
    return libs


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    return _require_tool("java", "install a JRE >= 11 (Debian: apt-get install openjdk-17-jre)")


class LocalKafka(_LocalServer):
    """A single-node broker (KRaft, combined broker+controller) of our own, as local processes.

    Its ports and its data directory stay the same across ``stop()``, ``kill()`` and
    ``start()``, so a broker started again keeps its topics, records and committed offsets.
    The data directory is removed by ``close()`` only. Get one from ``local_kafka()``.
    """

    name = "kafka"

    def __init__(
        self,
        command: Sequence[str],
        scratch_dir: Path,
        log_path: Path,
        *,
        broker_port: int,
        controller_port: int,
    ) -> None:
        super().__init__(command, scratch_dir, log_path)
        self.broker_port = broker_port
        self.controller_port = controller_port

    @property
    def address(self) -> str:
        return f"{HOST}:{self.broker_port}"

    @property
    def bootstrap_servers(self) -> str:
        return self.address

    @property
    def data_dir(self) -> Path:
        """The broker's ``log.dirs``: its topics, its metadata log and committed offsets."""
        return self.scratch_dir / "data"

    @classmethod
    def _format(cls, libs: Path, java: str, overrides: Mapping[str, object]) -> LocalKafka:
        """Format KRaft storage in a temp dir, on free ports; nothing runs yet. ``overrides``
        come after the template's settings, so they win."""
        broker_port, controller_port = _free_ports(2)
        scratch = Path(tempfile.mkdtemp(prefix=f"recsys-kafka-{broker_port}-"))
        log_path = _log_path(f"kafka-{broker_port}")
        try:
            config = Template(KAFKA_PROPERTIES_TEMPLATE.read_text()).substitute(
                broker_port=broker_port, controller_port=controller_port, log_dirs=scratch / "data"
            )
            if overrides:
                config += "\n# Set by the caller.\n"
                config += "".join(f"{key}={value}\n" for key, value in overrides.items())
            properties = scratch / "server.properties"
            properties.write_text(config)
            # The scratch dir goes away at close; the log keeps the exact configuration.
            log_path.write_text(f"# {properties}\n{config}\n")
            log4j = scratch / "log4j.properties"
            log4j.write_text(LOG4J_PROPERTIES)
            jvm = [java, *KAFKA_JVM_OPTIONS, f"-Dlog4j.configuration={log4j.as_uri()}"]
            jvm += ["-cp", f"{libs}/*"]
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            format_storage = [*jvm, "kafka.tools.StorageTool", "format"]
            # One argument: an id may begin with "-", which the tool would read as an option.
            format_storage += [f"--cluster-id={cluster_id}", "-c", str(properties)]
            with log_path.open("ab") as log:
                formatted = subprocess.run(
                    format_storage,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=READY_TIMEOUT_S,
                    check=False,
                )
            if formatted.returncode != 0:
                raise ServiceError(
                    f"formatting Kafka storage failed (exit {formatted.returncode}); "
                    f"log {log_path}:\n{_excerpt(_read_log(log_path))}"
                )
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        command = [*jvm, "kafka.Kafka", str(properties)]
        return cls(
            command, scratch, log_path, broker_port=broker_port, controller_port=controller_port
        )

    def _wait_until_ready(self, deadline: float, check_running: Callable[[], None]) -> None:
        _wait_for_kafka(self.bootstrap_servers, deadline, check_running)


def _start_local_kafka(
    started: list[_Started], properties: Mapping[str, object] | None = None
) -> LocalKafka:
    """A new broker on free ports, recorded in ``started`` before it is launched."""
    version = kafka_version()
    libs = _kafka_libs(version)
    java = _java()
    began = time.monotonic()
    broker = LocalKafka._format(libs, java, properties or {})
    started.append(broker)
    broker._start(began + READY_TIMEOUT_S)
    elapsed = time.monotonic() - began
    _say(
        f"kafka local {version} ready on {broker.bootstrap_servers} in {elapsed:.1f} s "
        f"(log {broker.log_path})"
    )
    return broker


@contextlib.contextmanager
def local_kafka(properties: Mapping[str, object] | None = None) -> Iterator[LocalKafka]:
    """Yield a private broker, started and ready; close it on exit, whatever happened.

    Always local processes (Java and Maven's jars), whatever KAFKA_BOOTSTRAP_SERVERS says and
    whether Docker answers: a test that stops, kills and restarts a broker needs one of its
    own. Ports taken by another process during start-up are retried on new ones.
    ``properties`` are broker settings over RESTARTABLE_PROPERTIES and the template's.
    """
    start = functools.partial(
        _start_local_kafka, properties={**RESTARTABLE_PROPERTIES, **(properties or {})}
    )
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            yield _on_free_ports(start, started)
        finally:
            _close_all(started)


def _wait_for_port(address: str, deadline: float, check_running: Callable[[], None]) -> None:
    """Cheap TCP polling first: kafka-python leaks a thread per failed client bootstrap."""
    host, port = address.rsplit(":", 1)
    while True:
        check_running()
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1):
            return
        if time.monotonic() > deadline:
            raise ServiceError(f"nothing listens on {address} after {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.1)


def _wait_for_kafka(
    bootstrap_servers: str, deadline: float, check_running: Callable[[], None]
) -> None:
    """Ready means: a topic can be created and gets a leader, AND a record produced to it
    is acknowledged. A listening socket alone is not enough: a KRaft broker accepts
    connections a moment before its controller can create topics and elect leaders.
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import KafkaError

    _wait_for_port(bootstrap_servers, deadline, check_running)
    client = {
        "bootstrap_servers": bootstrap_servers,
        "client_id": "test-services-probe",
        "bootstrap_timeout_ms": 5000,
        "request_timeout_ms": 5000,
    }
    while True:
        try:
            admin = KafkaAdminClient(**client)
            try:  # created up front: a producer would log an error before auto-creating it
                admin.create_topics(
                    {KAFKA_PROBE_TOPIC: {"num_partitions": 1, "replication_factor": 1}},
                    raise_errors=False,  # it already exists on a re-used broker
                    wait_for_metadata=True,
                )
            finally:
                admin.close()
            producer = KafkaProducer(**client, max_block_ms=10000)
            try:
                producer.send(KAFKA_PROBE_TOPIC, b"ready").get(timeout=15)
            finally:
                producer.close(timeout=5)
        except (KafkaError, OSError) as exc:
            check_running()
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"Kafka on {bootstrap_servers} not ready after {READY_TIMEOUT_S:.0f} s: {exc!r}"
                ) from exc
            time.sleep(0.5)
        else:
            check_running()  # whoever answered, our broker must still be up
            return
