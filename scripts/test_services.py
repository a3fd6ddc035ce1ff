#!/usr/bin/env python3
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
script did not start is ever signalled. Logs live in ``.cache/test-services/``.

Command line::

    python scripts/test_services.py run -- pytest -m integration
    eval "$(python scripts/test_services.py start)"   # ...later: ... stop

Python API (used by ``tests/conftest.py``): ``provide_kafka()``, ``provide_redis()`` and
``provide_services()`` are context managers.

Only the standard library is imported at module level, so ``--help`` and ``stop`` are
instant; kafka-python, redis, docker and testcontainers are imported where they are used.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from types import FrameType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

KAFKA_ENV = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_ENV = "REDIS_URL"

SCRIPTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS_DIR.parent
KAFKA_POM = SCRIPTS_DIR / "kafka" / "pom.xml"
KAFKA_PROPERTIES_TEMPLATE = SCRIPTS_DIR / "kafka" / "server.properties.template"
# Inside the repo (git-ignored) so that logs are easy to find and to upload from CI.
LOG_DIR = REPO_ROOT / ".cache" / "test-services"
STATE_FILE = LOG_DIR / "state.json"
# Outside the repo so that every clone and worktree re-uses the ~50 MB of jars.
CACHE_ROOT = Path.home() / ".cache" / "recsys-stream"

HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
MAVEN_TIMEOUT_S = 900.0
APT_TIMEOUT_S = 600.0
LOG_FILES_KEPT = 20
PORT_ATTEMPTS = 3
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
# Docker mode only. Kafka: the image testcontainers' KafkaContainer is built and tested for.
KAFKA_IMAGE = "confluentinc/cp-kafka:7.6.0"
REDIS_IMAGE = "redis:7"
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
# Its 300-line dump of every setting hides the interesting lines; the log starts with our
# server.properties instead.
log4j.logger.kafka.server.KafkaConfig=WARN
"""


class ServiceError(RuntimeError):
    """A service could not be provided; the message says why and where its log is."""


class _PortTakenError(ServiceError):
    """Another process bound the port between our choosing it and the server binding it."""


@dataclass(frozen=True)
class Services:
    """Where the tests find Kafka and Redis."""

    kafka_bootstrap_servers: str
    redis_url: str

    def environment(self) -> dict[str, str]:
        """The variables that tests (and ``tests/conftest.py``) read."""
        return {KAFKA_ENV: self.kafka_bootstrap_servers, REDIS_ENV: self.redis_url}


class _Started(Protocol):
    """Something this script started and therefore must stop."""

    name: str

    def stop(self) -> None: ...

    def to_state(self) -> dict[str, object]: ...


def _say(message: str) -> None:
    print(f"test-services: {message}", file=sys.stderr, flush=True)


def _read_log(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"


def _excerpt(log: str) -> str:
    """The first errors and the last lines of a log, for error messages: the cause of a failed
    start is usually at the first error, buried under hundreds of lines of shutdown."""
    lines = log.splitlines()
    errors = [line for line in lines if any(m in line for m in (" ERROR ", "FATAL", "Exception"))]
    head = ["first errors:", *errors[:8], "last lines:"] if errors else []
    return "\n".join(head + lines[-20:])


def _log_path(name: str) -> Path:
    """The log file for ``name`` in LOG_DIR, dropping the oldest logs so that the directory
    stays small."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    logs = sorted(LOG_DIR.glob("*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[LOG_FILES_KEPT:]:
        old.unlink(missing_ok=True)
    return LOG_DIR / f"{name}.log"


def _free_ports(count: int) -> list[int]:
    """Ports free right now on HOST; bound together so that they are distinct."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None when it no longer exists.

    The start time tells a process apart from a later one that got the same pid.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
    return fields[0], int(fields[19])


# ---------------------------------------------------------------------------------------
# Things we started: local process groups and Docker containers.


@dataclass
class _LocalProcess:
    """A server we launched as the leader of its own process group, plus its scratch dir."""

    name: str
    pid: int
    start_ticks: int
    scratch_dir: Path
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None  # only in the process that launched it

    @classmethod
    def launch(
        cls, name: str, command: Sequence[str], scratch_dir: Path, log_path: Path
    ) -> _LocalProcess:
        """Start ``command`` in a new session: Ctrl-C in the terminal does not reach it, and
        stopping it signals exactly its process group."""
        with log_path.open("ab") as log:
            log.write(f"$ {shlex.join(command)}\n".encode())
            log.flush()
            popen = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=scratch_dir,
                start_new_session=True,
            )
        stat = _proc_stat(popen.pid)
        assert stat is not None, "an unreaped child always has a /proc entry"
        return cls(name, popen.pid, stat[1], scratch_dir, log_path, popen)

    def is_ours(self) -> bool:
        """True while ``pid`` is still the live process we launched (not a recycled pid)."""
        stat = _proc_stat(self.pid)
        return stat is not None and stat[1] == self.start_ticks and stat[0] != "Z"

    def check_running(self) -> None:
        """Raise if the server exited: waiting any longer for it to become ready is pointless."""
        if self.is_ours():
            return
        code = self.popen.poll() if self.popen is not None else None
        log = _read_log(self.log_path)
        error = _PortTakenError if "Address already in use" in log else ServiceError
        raise error(f"{self.name} exited (code {code}); log {self.log_path}:\n{_excerpt(log)}")

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it after STOP_TIMEOUT_S, remove scratch data."""
        try:
            if not self.is_ours():
                _say(f"{self.name} (pid {self.pid}) had already exited")
            else:
                began = time.monotonic()
                os.killpg(self.pid, signal.SIGTERM)
                if not self._wait_gone(STOP_TIMEOUT_S):
                    _say(f"{self.name} (pid {self.pid}) ignored SIGTERM; sending SIGKILL")
                    os.killpg(self.pid, signal.SIGKILL)
                    self._wait_gone(STOP_TIMEOUT_S)
                _say(f"stopped {self.name} (pid {self.pid}) in {time.monotonic() - began:.1f} s")
            if self.popen is not None:
                self.popen.poll()  # reap it
        finally:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)

    def _wait_gone(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.is_ours():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def to_state(self) -> dict[str, object]:
        return {
            "type": "process",
            "name": self.name,
            "pid": self.pid,
            "start_ticks": self.start_ticks,
            "scratch_dir": str(self.scratch_dir),
            "log_path": str(self.log_path),
        }


@dataclass
class _Container:
    """A container started through testcontainers, identified by id so that ``stop`` can
    remove it from another process."""

    name: str
    container_id: str

    def stop(self) -> None:
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


def _from_state(entry: dict[str, Any]) -> _Started:
    if entry["type"] == "container":
        return _Container(entry["name"], entry["container_id"])
    return _LocalProcess(
        name=entry["name"],
        pid=entry["pid"],
        start_ticks=entry["start_ticks"],
        scratch_dir=Path(entry["scratch_dir"]),
        log_path=Path(entry["log_path"]),
    )


def _stop_all(started: list[_Started]) -> bool:
    """Stop everything, newest first; False if something could not be stopped.

    An interrupt while stopping one thing does not leave the others running: it is re-raised
    once all of them had their turn.
    """
    stopped_all = True
    interrupted: BaseException | None = None
    while started:
        handle = started.pop()
        try:
            handle.stop()
        except Exception as exc:
            _say(f"could not stop {handle.name}: {exc!r}")
            stopped_all = False
        except BaseException as exc:
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
    return stopped_all


# ---------------------------------------------------------------------------------------
# Docker (mode 2).


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


# ---------------------------------------------------------------------------------------
# Local processes (mode 3).


def kafka_version() -> str:
    """The Kafka version is declared once, in scripts/kafka/pom.xml."""
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ElementTree.parse(KAFKA_POM).findtext("m:properties/m:kafka.version", None, namespace)
    if not version:
        raise ServiceError(f"{KAFKA_POM} does not declare <kafka.version>")
    return version.strip()


def _require_tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH; {hint}")
    return path


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


def _kafka_local(started: list[_Started]) -> str:
    """Format KRaft storage in a temp dir and run a combined broker+controller on it."""
    version = kafka_version()
    libs = _kafka_libs(version)
    java = _java()
    began = time.monotonic()
    broker_port, controller_port = _free_ports(2)
    scratch = Path(tempfile.mkdtemp(prefix=f"recsys-kafka-{broker_port}-"))
    log_path = _log_path(f"kafka-{broker_port}")
    try:
        config = Template(KAFKA_PROPERTIES_TEMPLATE.read_text()).substitute(
            broker_port=broker_port, controller_port=controller_port, log_dirs=scratch / "data"
        )
        properties = scratch / "server.properties"
        properties.write_text(config)
        # The scratch dir goes away at stop; the log keeps the exact configuration.
        log_path.write_text(f"# {properties}\n{config}\n")
        log4j = scratch / "log4j.properties"
        log4j.write_text(LOG4J_PROPERTIES)
        jvm = [java, *KAFKA_JVM_OPTIONS, f"-Dlog4j.configuration={log4j.as_uri()}"]
        jvm += ["-cp", f"{libs}/*"]
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        format_storage = [*jvm, "kafka.tools.StorageTool", "format"]
        format_storage += ["-t", cluster_id, "-c", str(properties)]
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
        broker = _LocalProcess.launch(
            "kafka", [*jvm, "kafka.Kafka", str(properties)], scratch, log_path
        )
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    started.append(broker)
    bootstrap_servers = f"{HOST}:{broker_port}"
    _wait_for_kafka(bootstrap_servers, began + READY_TIMEOUT_S, broker.check_running)
    elapsed = time.monotonic() - began
    _say(f"kafka local {version} ready on {bootstrap_servers} in {elapsed:.1f} s (log {log_path})")
    return bootstrap_servers


def _on_free_ports(start: Callable[[list[_Started]], str], started: list[_Started]) -> str:
    """Run a local ``start``, on new ports when another process took one of its ports.

    Ports are chosen free but bound by the server only seconds later (JVM start-up); on a busy
    machine another process can take one in between, which deserves a retry, not a red build.
    """
    attempt = 1
    while True:
        first_new = len(started)
        try:
            return start(started)
        except _PortTakenError:
            if attempt == PORT_ATTEMPTS:
                raise
            failed = started[first_new:]
            del started[first_new:]
            names = ", ".join(handle.name for handle in failed)
            _stop_all(failed)  # already exited: this reaps it and removes its scratch dir
            _say(f"{names}: another process took a chosen port meanwhile; retrying")
            attempt += 1


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


def _redis_server() -> str:
    """Debian's redis-server, installed with apt-get the first time it is needed."""
    if path := shutil.which("redis-server"):
        return path
    apt_get = _require_tool("apt-get", "install redis-server with your package manager")
    if os.geteuid() != 0:
        raise ServiceError(
            "redis-server is missing; install it with: sudo apt-get install redis-server"
        )
    log_path = _log_path("apt-redis-server")
    _say(f"installing redis-server with apt-get (log {log_path})")
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = [apt_get, "install", "-y", "--no-install-recommends", "redis-server"]
    with log_path.open("ab") as log:
        for command in ([apt_get, "update"], install):
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                timeout=APT_TIMEOUT_S,
                check=False,
            )
            if result.returncode != 0:
                excerpt = _excerpt(_read_log(log_path))
                raise ServiceError(f"`{shlex.join(command)}` failed; log {log_path}:\n{excerpt}")
    return _require_tool("redis-server", f"apt-get did not install it; log {log_path}")


def _redis_local(started: list[_Started]) -> str:
    """An in-memory redis-server: no RDB, no AOF, its working dir a throwaway temp dir."""
    redis_server = _redis_server()
    began = time.monotonic()
    (port,) = _free_ports(1)
    scratch = Path(tempfile.mkdtemp(prefix=f"recsys-redis-{port}-"))
    log_path = _log_path(f"redis-{port}")
    command = [
        redis_server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no",
        "--dir", str(scratch), "--daemonize", "no", "--logfile", "",
    ]  # fmt: skip
    try:
        server = _LocalProcess.launch("redis", command, scratch, log_path)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    started.append(server)
    url = f"redis://{HOST}:{port}/0"
    _wait_for_redis(url, began + READY_TIMEOUT_S, server.check_running)
    _say(f"redis local ready at {url} in {time.monotonic() - began:.1f} s (log {log_path})")
    return url


def _wait_for_redis(url: str, deadline: float, check_running: Callable[[], None]) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        while True:
            try:
                client.ping()
            except redis.exceptions.RedisError as exc:  # includes time-outs
                check_running()
                if time.monotonic() > deadline:
                    raise ServiceError(
                        f"Redis at {url} not ready after {READY_TIMEOUT_S:.0f} s: {exc}"
                    ) from exc
                time.sleep(0.1)
            else:
                check_running()  # whoever answered, our server must still be up
                return
    finally:
        client.close()


# ---------------------------------------------------------------------------------------
# Choosing a mode per service.


def _kafka(started: list[_Started], *, detached: bool = False) -> str:
    if configured := os.environ.get(KAFKA_ENV):
        _say(f"kafka from {KAFKA_ENV}={configured} (not started here)")
        return configured
    if _docker_engine_answers():
        _configure_testcontainers(detached=detached)
        return _kafka_in_docker(started)
    return _on_free_ports(_kafka_local, started)


def _redis(started: list[_Started], *, detached: bool = False) -> str:
    if configured := os.environ.get(REDIS_ENV):
        _say(f"redis from {REDIS_ENV}={configured} (not started here)")
        return configured
    if _docker_engine_answers():
        _configure_testcontainers(detached=detached)
        return _redis_in_docker(started)
    return _on_free_ports(_redis_local, started)


def _configure_testcontainers(*, detached: bool) -> None:
    """Ryuk removes containers once their creator exits. That is the safety net we want,
    except for `start`, whose containers must outlive it (`stop` removes them)."""
    if detached:
        from testcontainers.core.config import testcontainers_config

        testcontainers_config.ryuk_disabled = True


def _interrupt_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM unwind like Ctrl-C while services are provided through the API.

    By default SIGTERM kills pytest on the spot, without fixture teardown, and our servers,
    in sessions of their own, would outlive it. A handler that someone else installed (the
    command line's, for one) is left alone, as is everything outside the main thread.
    """
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def provide_kafka() -> Iterator[str]:
    """Yield Kafka bootstrap servers; stop the broker on exit if it was started here."""
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            yield _kafka(started)
        finally:
            _stop_all(started)


@contextlib.contextmanager
def provide_redis() -> Iterator[str]:
    """Yield a Redis URL; stop the server on exit if it was started here."""
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            yield _redis(started)
        finally:
            _stop_all(started)


@contextlib.contextmanager
def provide_services() -> Iterator[Services]:
    """Yield both services; stop on exit whatever was started here."""
    started: list[_Started] = []
    with _sigterm_as_interrupt():
        try:
            redis_url = _redis(started)  # first: cheap, and it fails fast if it cannot start
            yield Services(kafka_bootstrap_servers=_kafka(started), redis_url=redis_url)
        finally:
            _stop_all(started)


# ---------------------------------------------------------------------------------------
# Command line.


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM (CI cancelling a job) into an exception so cleanup code runs."""
    raise SystemExit(128 + signum)


def _terminate(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """Give the command ``grace_s`` to exit on its own, then SIGTERM it, then SIGKILL it."""
    for timeout_s, escalate in ((grace_s, process.terminate), (STOP_TIMEOUT_S, process.kill)):
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            escalate()
        else:
            return
    process.wait()


def _cmd_run(command: list[str]) -> int:
    began = time.monotonic()
    with provide_services() as services:
        _say(f"running: {shlex.join(command)}")
        try:
            process = subprocess.Popen(command, env=os.environ | services.environment())
        except OSError as exc:
            _say(f"cannot run {command[0]}: {exc}")
            return 127  # the shell's "command not found"
        try:
            code = process.wait()
        except KeyboardInterrupt:  # the terminal sent SIGINT to the command too: let it finish
            _terminate(process, grace_s=STOP_TIMEOUT_S)
            raise
        except BaseException:
            _terminate(process, grace_s=0)
            raise
    exit_code = code if code >= 0 else 128 - code  # killed by a signal: the shell's convention
    _say(f"command exited with {exit_code}; {time.monotonic() - began:.1f} s in total")
    return exit_code


def _cmd_start() -> int:
    if STATE_FILE.exists():
        raise ServiceError(f"already started ({STATE_FILE}); run `stop` first")
    started: list[_Started] = []
    try:
        redis_url = _redis(started, detached=True)
        services = Services(
            kafka_bootstrap_servers=_kafka(started, detached=True), redis_url=redis_url
        )
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "environment": services.environment(),
            "started": [handle.to_state() for handle in started],
        }
        partial = STATE_FILE.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(STATE_FILE)
    except BaseException:
        _stop_all(started)
        raise
    for name, value in services.environment().items():
        print(f"export {name}={shlex.quote(value)}")
    _say(f"started; stop with: python scripts/test_services.py stop (state in {STATE_FILE})")
    return 0


def _cmd_stop() -> int:
    try:
        state = json.loads(STATE_FILE.read_text())
    except FileNotFoundError:
        _say("nothing to stop")
        return 0
    if not _stop_all([_from_state(entry) for entry in state["started"]]):
        raise ServiceError(f"kept {STATE_FILE} so that `stop` can be retried")
    STATE_FILE.unlink()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="test_services.py",
        description=(
            "Provide a real Kafka and a real Redis for tests: from KAFKA_BOOTSTRAP_SERVERS / "
            "REDIS_URL when set, else Docker (testcontainers) when an engine answers, else "
            f"local processes (Kafka {kafka_version()} jars from Maven Central, Debian "
            f"redis-server). Logs: {LOG_DIR}."
        ),
    )
    commands = parser.add_subparsers(dest="action", required=True)
    run = commands.add_parser(
        "run",
        help="provide the services, run COMMAND with the variables set, stop them, "
        "exit with COMMAND's code",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    commands.add_parser(
        "start",
        help="provide the services and leave them running; prints `export` lines "
        '(use: eval "$(python scripts/test_services.py start)")',
    )
    commands.add_parser("stop", help="stop what `start` started")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    arguments = parser.parse_args(argv)
    if arguments.action == "run":
        if arguments.command[:1] == ["--"]:
            del arguments.command[0]
        if not arguments.command:
            parser.error("run needs a command: run -- COMMAND [ARG...]")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        if arguments.action == "run":
            return _cmd_run(arguments.command)
        if arguments.action == "start":
            return _cmd_start()
        return _cmd_stop()
    except ServiceError as exc:
        _say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
