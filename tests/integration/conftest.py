"""Fixtures of the integration tests (Kafka and Redis themselves come from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.processes import Trainer


@pytest.fixture
def trainers() -> Iterator[list[Trainer]]:
    """Trainers a test starts; stopped at the end whatever happened."""
    started: list[Trainer] = []
    yield started
    for trainer in started:
        trainer.stop()
