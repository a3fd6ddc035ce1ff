"""The env-to-settings check itself: what it accepts and what it catches."""

from __future__ import annotations

import pytest

from recsys_stream.settings import Settings
from tests.deploy.settings_env import settings_env_names, unknown_settings


@pytest.mark.parametrize(
    "name",
    [
        "RECSYS_KAFKA__TOPIC",  # a pydantic section
        "RECSYS_API__API_KEY",
        "RECSYS_LEARNER__DEVICE",  # a dataclass section
        "RECSYS_LEARNER__RETRAIN__EVERY_EVENTS",  # a dataclass inside a dataclass
        "RECSYS_OFFLINE__LEARNER__MODEL__WEIGHT_DECAY",
        "RECSYS_KAFKA",  # a whole section, as JSON
        "KAFKA_BOOTSTRAP_SERVERS",  # the conventional names (validation aliases)
        "REDIS_URL",
        "RECSYS_DATA_DIR",
        "recsys_kafka__topic",  # pydantic-settings is not case-sensitive here
    ],
)
def test_real_settings_pass(name: str) -> None:
    assert unknown_settings([name]) == []


@pytest.mark.parametrize(
    "name",
    [
        "RECSYS_KAFKA__TOPICS",  # a typo
        "RECSYS_KAFKA_TOPIC",  # one underscore: not the nested delimiter
        "RECSYS_LEARNER__MODEL__DIMS",
        "RECSYS_NOPE",
        "KAFKA_ADVERTISED_LISTENERS",  # the broker's variable, not ours
        "RECSYS_DATA_DIR_ENV",  # the field behind an alias is not read by its own name
        "RECSYS_TRAINER__DATA_DIR__X",  # a pending name is accepted exactly, not as a prefix
    ],
)
def test_everything_else_is_caught(name: str) -> None:
    assert unknown_settings([name]) == [name]


def test_the_names_come_from_the_settings_class() -> None:
    names = settings_env_names()
    for section, info in Settings.model_fields.items():
        if info.validation_alias is None:
            assert f"RECSYS_{section.upper()}" in names
    assert not [n for n in names if n.startswith(("RECSYS_DATA_DIR_ENV", "RECSYS_KAFKA_BOOT"))]
