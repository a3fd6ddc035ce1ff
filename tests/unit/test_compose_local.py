"""The local compose runner reads docker-compose.yml as compose does: the project's services,
their commands and environment, interpolated; only addresses, paths and ports are mapped."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scripts.compose_local import (
    COMPOSE_FILE,
    ComposeError,
    interpolate,
    localise,
    project_services,
    start_order,
)

VARIABLES = {"RECSYS_API_KEY": "k3y", "REPLAY_SPEED": "7200"}


@pytest.mark.parametrize(
    ("value", "variables", "expected"),
    [
        ("plain", {}, "plain"),
        ("${A}", {"A": "x"}, "x"),
        ("$A-$B", {"A": "x", "B": "y"}, "x-y"),
        ("${A:-dflt}", {}, "dflt"),
        ("${A:-dflt}", {"A": ""}, "dflt"),
        ("${A-dflt}", {"A": ""}, ""),
        ("${A:-${B}}", {"B": "nested"}, "nested"),
        ("cost $$5", {}, "cost $5"),
        ("${A:?}", {"A": "set"}, "set"),
    ],
)
def test_interpolation_follows_compose(
    value: str, variables: dict[str, str], expected: str
) -> None:
    assert interpolate(value, variables) == expected


def test_a_required_variable_that_is_missing_is_an_error_naming_it() -> None:
    with pytest.raises(ComposeError, match="set RECSYS_API_KEY"):
        project_services(yaml.safe_load(COMPOSE_FILE.read_text()), {})


def test_the_project_services_are_the_ones_built_here() -> None:
    services = project_services(yaml.safe_load(COMPOSE_FILE.read_text()), VARIABLES)
    assert set(services) == {"trainer", "api", "replay"}  # trainer-gpu: only in its profile
    assert services["trainer"].command == ["trainer"]
    assert services["replay"].command == [
        "replay", "--dataset", "ml-100k", "--speed", "7200", "--resume",
    ]  # fmt: skip
    assert services["replay"].one_shot
    assert not services["api"].one_shot
    assert services["api"].environment["RECSYS_API__API_KEY"] == "k3y"
    assert services["trainer"].environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert start_order(services) == ["trainer", "api", "replay"]
    gpu = project_services(yaml.safe_load(COMPOSE_FILE.read_text()), VARIABLES, ["gpu"])
    assert gpu["trainer-gpu"].environment["RECSYS_LEARNER__DEVICE"] == "cuda"


def test_localising_maps_addresses_paths_and_ports_only(tmp_path: Path) -> None:
    services = project_services(yaml.safe_load(COMPOSE_FILE.read_text()), VARIABLES)
    trainer = localise(
        services["trainer"], kafka="127.0.0.1:1234", redis_url="redis://h:1/0", workdir=tmp_path
    )
    environment = trainer.environment
    assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:1234"
    assert environment["REDIS_URL"] == "redis://h:1/0"
    assert environment["RECSYS_TRAINER__CHECKPOINT_PATH"] == str(
        tmp_path / "trainer" / "trainer.ckpt"
    )
    assert environment["RECSYS_TRAINER__HTTP_HOST"] == "127.0.0.1"
    assert trainer.http_port is not None
    assert environment["RECSYS_TRAINER__HTTP_PORT"] == str(trainer.http_port)
    untouched = set(services["trainer"].environment) - {
        "KAFKA_BOOTSTRAP_SERVERS",
        "REDIS_URL",
        "RECSYS_TRAINER__CHECKPOINT_PATH",
        "RECSYS_TRAINER__DATA_DIR",
        "RECSYS_DATA__CACHE_DIR",
        "RECSYS_TRAINER__HTTP_HOST",
        "RECSYS_TRAINER__HTTP_PORT",
    }
    for key in untouched:
        assert environment[key] == services["trainer"].environment[key], key


def test_a_dependency_cycle_is_refused() -> None:
    compose = {
        "services": {
            "a": {"build": ".", "depends_on": ["b"]},
            "b": {"build": ".", "depends_on": ["a"]},
        }
    }
    with pytest.raises(ComposeError, match="cycle"):
        start_order(project_services(compose, {}))
