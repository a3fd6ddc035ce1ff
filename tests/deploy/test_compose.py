"""docker-compose.yml: the Compose Specification's schema, and the rules the simulation keeps
(real settings only, no default secrets, healthchecks and ordering, non-root read-only app
containers, state in volumes). No Docker engine here: nothing is started."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import REPO_ROOT
from tests.deploy.settings_env import unknown_settings
from tests.deploy.test_dockerfile import DOCKERFILE, parse_dockerfile, stage_env

CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
COMPOSE_FILES = [REPO_ROOT / "docker-compose.yml", REPO_ROOT / "deploy/compose/local-data.yml"]
APP_SERVICES = {"trainer", "trainer-gpu", "api", "replay"}
LONG_RUNNING = {"kafka", "redis", "trainer", "trainer-gpu", "api", "prometheus", "grafana"}
# The settings each role writes files under (the rest of the shared settings it ignores).
WRITES = {
    "trainer": ("RECSYS_TRAINER__",),
    "trainer-gpu": ("RECSYS_TRAINER__",),
    "api": ("RECSYS_DATA__",),
    "replay": ("RECSYS_REPLAY__", "RECSYS_DATA__"),
}
SECRET_NAME = re.compile(r"KEY|PASSWORD|SECRET|TOKEN")
# ${NAME:?message}: compose stops with the message when NAME is unset or empty.
REQUIRED_VARIABLE = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*):\?[^}]+\}$")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _volume_targets(service: dict[str, Any]) -> list[str]:
    targets = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            targets.append(volume["target"])
        else:
            targets.append(volume.split(":")[1])
    tmpfs = service.get("tmpfs", [])
    targets.extend(entry.split(":")[0] for entry in ([tmpfs] if isinstance(tmpfs, str) else tmpfs))
    return targets


def _within(path: str, roots: list[str]) -> bool:
    return any(PurePosixPath(path).is_relative_to(root) for root in roots)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_it_follows_the_compose_specification(path: Path) -> None:
    done = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_does_reject_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "compose.yml"
    bad.write_text("services:\n  api:\n    image: x:1\n    healthcheck: {tset: [CMD, true]}\n")
    done = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "tset" in done.stdout


def test_the_app_services_are_built_from_this_repository(
    services: dict[str, dict[str, Any]],
) -> None:
    built = {name for name, s in services.items() if "build" in s}
    assert built == APP_SERVICES
    for name in built:
        assert services[name]["build"]["context"] == "."
    assert services["trainer-gpu"]["build"]["target"] == "trainer-cuda"
    for name in built - {"trainer-gpu"}:
        assert services[name]["build"]["target"] == "cpu"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_every_variable_of_an_app_container_is_a_setting(path: Path) -> None:
    services = yaml.safe_load(path.read_text())["services"]
    for name in APP_SERVICES & set(services):
        assert unknown_settings(_environment(services[name])) == [], name


def test_no_secret_has_a_value_or_a_default(services: dict[str, dict[str, Any]]) -> None:
    required = set()
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                match = REQUIRED_VARIABLE.match(value)
                assert match, f"{name}: {key} must be ${{VAR:?message}}, not {value!r}"
                required.add(match.group(1))
    assert required == {"RECSYS_API_KEY", "GRAFANA_ADMIN_PASSWORD"}
    example = (REPO_ROOT / ".env.example").read_text()
    for variable in required:
        assert re.search(rf"^{variable}=$", example, re.MULTILINE), f".env.example: {variable}="
    assert ".env" in (REPO_ROOT / ".gitignore").read_text().split()


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    assert set(services) == LONG_RUNNING | {"replay"}
    for name in LONG_RUNNING:
        test = services[name].get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test[0] in {"CMD", "CMD-SHELL"}, name
    for name in APP_SERVICES - {"replay"}:
        port = _environment(services[name]).get(
            "RECSYS_API__PORT" if name == "api" else "RECSYS_TRAINER__HTTP_PORT"
        )
        assert f"http://127.0.0.1:{port}/healthz" in " ".join(services[name]["healthcheck"]["test"])


def test_services_wait_for_what_they_need(services: dict[str, dict[str, Any]]) -> None:
    needs = {
        "trainer": {"kafka", "redis"},
        "trainer-gpu": {"kafka", "redis"},
        "api": {"kafka", "redis"},
        "replay": {"kafka"},
        "grafana": {"prometheus"},
    }
    for name, wanted in needs.items():
        depends = services[name]["depends_on"]
        assert set(depends) == wanted, name
        for target, condition in depends.items():
            assert condition == {"condition": "service_healthy"}, (name, target)
            assert "healthcheck" in services[target], target


def test_the_app_containers_run_locked_down(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["user"] == "10001:10001", name
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in _volume_targets(service), name
        assert service["stop_grace_period"] == "60s", name


def test_state_settings_point_into_volumes(services: dict[str, dict[str, Any]]) -> None:
    for name in APP_SERVICES:
        roots = _volume_targets(services[name])
        for key, value in _environment(services[name]).items():
            if key.startswith(WRITES[name]) and value.startswith("/"):
                assert _within(value, roots), f"{name}: {key}={value} is on the read-only root"
    assert "/var/lib/recsys/trainer" in _volume_targets(services["trainer"])
    assert _environment(services["trainer"])["RECSYS_TRAINER__CHECKPOINT_PATH"].startswith(
        "/var/lib/recsys/trainer/"
    )


def test_the_trainer_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "container_name" not in service, name
    for name in ("trainer", "trainer-gpu"):
        assert "ports" not in services[name], name
        env = _environment(services[name])
        # `TRAINER_SCALE_OUT=true docker compose up --scale trainer=N`: workers of one model,
        # off unless asked for (one trainer keeps its retrains and baselines).
        assert env["RECSYS_TRAINER__SCALE_OUT"] == "${TRAINER_SCALE_OUT:-false}"
        assert "RECSYS_TRAINER__WORKER_NAME" not in env  # each replica's host name
        # Every replica mounts the same volume under the checkpoint folder: a new worker
        # starts from the others' checkpoints.
        checkpoints = str(PurePosixPath(env["RECSYS_TRAINER__CHECKPOINT_PATH"]).parent)
        shared = [
            v
            for v in services[name]["volumes"]
            if isinstance(v, str) and _within(checkpoints, [v.split(":")[1]])
        ]
        assert shared, name
        assert not shared[0].startswith(("/", ".")), "a named volume"


def test_the_api_is_published_on_its_port(services: dict[str, dict[str, Any]]) -> None:
    api = services["api"]
    assert _environment(api)["RECSYS_API__PORT"] == "8000"
    assert api["ports"] == ["127.0.0.1:8000:8000"]
    assert api["command"] == ["api"]


def test_the_replay_is_a_resumable_one_shot(services: dict[str, dict[str, Any]]) -> None:
    replay = services["replay"]
    assert replay["restart"] == "on-failure"
    command = replay["command"]
    assert command[0] == "replay"
    assert command[command.index("--dataset") + 1] == "${REPLAY_DATASET:-ml-100k}"
    assert command[command.index("--speed") + 1] == "${REPLAY_SPEED:-3600}"
    assert "--resume" in command
    env = _environment(replay)
    targets = _volume_targets(replay)
    assert env["RECSYS_REPLAY__STATE_DIR"] in targets
    assert env["RECSYS_DATA__CACHE_DIR"] in targets


def test_the_gpu_trainer_asks_for_an_nvidia_gpu(services: dict[str, dict[str, Any]]) -> None:
    gpu = services["trainer-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["command"] == ["trainer"]
    assert _environment(gpu)["RECSYS_LEARNER__DEVICE"] == "cuda"
    (device,) = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert _environment(services["trainer"])["RECSYS_LEARNER__DEVICE"] == "cpu"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        repository, _, tag = service["image"].rpartition(":")
        assert repository, f"{name}: {service['image']} has no tag"
        assert tag not in {"", "latest"}, name


def test_kafka_is_one_kraft_node_with_single_replica_internal_topics(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    pom = ElementTree.parse(REPO_ROOT / "scripts/kafka/pom.xml").getroot()
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.findtext("m:properties/m:kafka.version", namespaces=namespace)
    assert version is not None
    assert version.startswith("3.9.")
    assert kafka["image"] == f"apache/kafka:{version}", "the test broker's version"
    env = _environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    protocols = dict(
        pair.split(":") for pair in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    listeners = [item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")]
    assert set(listeners) == set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    for name in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[name] == "1", name
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert _within(env["KAFKA_LOG_DIRS"], _volume_targets(kafka))
    apps = _environment(services["trainer"])
    assert f"PLAINTEXT://{apps['KAFKA_BOOTSTRAP_SERVERS']}" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_NUM_PARTITIONS"] == apps["RECSYS_KAFKA__PARTITIONS"]
    assert apps["RECSYS_KAFKA__REPLICATION_FACTOR"] == "1"


def test_redis_is_a_bounded_lru_cache(services: dict[str, dict[str, Any]]) -> None:
    command = services["redis"]["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "--maxmemory" in command
    assert _environment(services["api"])["REDIS_URL"] == "redis://redis:6379/0"


def test_grafana_is_provisioned_from_the_repository(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    mounted = {}
    for volume in grafana["volumes"]:
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            assert (REPO_ROOT / source).is_dir(), source
            mounted[target] = REPO_ROOT / source
    home = PurePosixPath(_environment(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (mounted[str(home.parent)] / home.name).is_file()
    assert _environment(grafana)["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


def test_the_image_defaults_agree_with_compose(services: dict[str, dict[str, Any]]) -> None:
    image: dict[str, str] = {}
    for stage in parse_dockerfile(DOCKERFILE.read_text()):
        if stage.name in {"runtime", "cpu"}:
            image.update(stage_env(stage))
    for name in APP_SERVICES - {"trainer-gpu"}:
        for key, value in _environment(services[name]).items():
            if key in image:
                assert image[key] == value, (
                    f"{name}: {key} is {value!r}, the image says {image[key]!r}"
                )
