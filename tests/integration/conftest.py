"""Fixtures of the integration tests (Kafka and Redis themselves come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scripts.trainer_process import TrainerProcess


@pytest.fixture
def trainers() -> Iterator[list[TrainerProcess]]:
    """Trainers a test starts; stopped at the end whatever happened."""
    started: list[TrainerProcess] = []
    yield started
    for trainer in started:
        trainer.stop()
