"""How a paced replay waits: on a fake clock, so that the rule is checked without sleeping."""

from __future__ import annotations

import pytest

from recsys_stream.settings import KafkaSettings, ReplaySettings
from replay import service
from replay.service import ReplayConfig, Replayer


class _FakeClock:
    """``time.monotonic`` and ``threading.Event.wait`` on a clock that moves only when
    waited on."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits = 0

    def monotonic(self) -> float:
        return self.now

    def wait(self, timeout: float | None = None) -> bool:
        self.waits += 1
        self.now += timeout or 0.0
        return False


class _NoLinger:
    def linger_ends(self) -> float | None:
        return None

    def send_all(self) -> None:  # pragma: no cover - nothing lingers
        raise AssertionError("nothing is buffered")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _FakeClock:
    fake = _FakeClock()
    monkeypatch.setattr("replay.service.time.monotonic", fake.monotonic)
    return fake


def _replay_at(rate: float, events: int, clock: _FakeClock) -> list[float]:
    replayer = Replayer(ReplayConfig(rate=rate), "test")
    replayer._stop.wait = clock.wait  # type: ignore[method-assign]  # the fake clock's wait
    started = clock.now
    sent_at = []
    for sent in range(events):
        replayer._wait_until_due(_NoLinger(), 0.0, sent, started)  # type: ignore[arg-type]
        sent_at.append(clock.now - started)
    return sent_at


def test_a_paced_replay_never_sends_an_event_more_than_a_step_early(clock: _FakeClock) -> None:
    sent_at = _replay_at(1_000.0, 500, clock)
    for sent, at in enumerate(sent_at):
        assert at >= sent / 1_000.0 - service._PACING_STEP_S
    # ... and keeps the rate: the last event goes out when it is due, within a step.
    assert sent_at[-1] == pytest.approx(499 / 1_000.0, abs=service._PACING_STEP_S)


def test_a_paced_replay_sleeps_once_a_step_not_once_an_event(clock: _FakeClock) -> None:
    _replay_at(10_000.0, 10_000, clock)  # one second of events
    assert clock.waits <= 1.0 / service._PACING_STEP_S + 1


class _Producer:
    """Takes sends and keeps them (the outbox's only use of a producer here)."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send(self, topic: str, *, value: bytes, partition: int, **_: object) -> None:
        self.sent.append((partition, value))


def test_the_linger_runs_from_the_oldest_event_still_buffered(clock: _FakeClock) -> None:
    config = ReplayConfig(
        kafka=KafkaSettings(envelope_max_events=2), producer=ReplaySettings(envelope_linger_ms=20)
    )
    producer = _Producer()
    outbox = service._Outbox(producer, config)
    assert outbox.linger_ends() is None
    outbox.add(0, 0, 7, b"{}")  # partition 0 starts at 100.0
    clock.now += 0.005
    outbox.add(1, 1, 8, b"{}")  # partition 1 at 100.005
    assert outbox.linger_ends() == pytest.approx(100.020)
    outbox.add(0, 2, 7, b"{}")  # partition 0 is full: sent
    assert [partition for partition, _ in producer.sent] == [0]
    assert outbox.linger_ends() == pytest.approx(100.025)
    clock.now += 0.020
    outbox.add(2, 3, 9, b"{}")  # past partition 1's linger: everything goes
    assert sorted(partition for partition, _ in producer.sent) == [0, 1, 2]
    assert outbox.linger_ends() is None
