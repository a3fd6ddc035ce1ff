"""A trainer worker of a group, without Kafka: the settings it runs with, the messages it
learns (only its partitions'), the update it keeps when publishing fails, its metrics. The
exchange through a real broker is tested in tests/integration/test_scaleout.py."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from recsys_stream.events import RatingEvent, encode
from recsys_stream.learner import ModelBase
from recsys_stream.settings import RetrainConfig, Settings
from recsys_stream.stream import ModelUpdate
from services.trainer.base_parts import BaseAssembly
from services.trainer.group import BASE_KEY, Entry, GroupMember, scale_out_settings
from services.trainer.telemetry import TrainerTelemetry
from services.trainer.worker import Message, TrainerCore


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        trainer={  # type: ignore[arg-type]
            "checkpoint_path": tmp_path / "trainer.ckpt",
            "sink": "memory",
            "scale_out": True,
            "worker_name": "w1",
            "exchange_every_events": 3,
            "exchange_every_s": 3600,
        },
        learner={"device": "cpu"},  # type: ignore[arg-type]
    )


class _FailingLog:
    """Stands for the updates topic while the brokers refuse writes, then accept them: a send
    is settled (held, or refused) when its future is waited for."""

    def __init__(self) -> None:
        self.failing = True
        self.sent: list[ModelUpdate] = []
        self.parts: list[Entry] = []
        """The refits' parts, as the updates topic would give them back."""

    def send(self, data: bytes, key: str) -> _Sending:
        return _Sending(self, data, key)

    def wait(self, timeout_s: float) -> list[tuple[str, bytes, float]]:
        return []  # nobody else publishes


def _attach_log(member: GroupMember) -> _FailingLog:
    """Give ``member`` an updates topic that accepts every write."""
    log = _FailingLog()
    log.failing = False
    member._log = log  # type: ignore[assignment]
    return log


class _Sending:
    is_done = True

    def __init__(self, log: _FailingLog, data: bytes, key: str) -> None:
        self.log, self.data, self.key = log, data, key

    def get(self, timeout: float) -> int:
        if self.log.failing:
            raise TimeoutError("no broker answered")
        if self.key.startswith(BASE_KEY):
            self.log.parts.append(Entry(self.key, self.data, time.time(), len(self.log.parts)))
        else:
            self.log.sent.append(ModelUpdate.from_bytes(self.data))
        return len(self.log.sent) - 1


@pytest.fixture
def member(tmp_path: Path) -> GroupMember:
    settings = scale_out_settings(_settings(tmp_path))
    return GroupMember(TrainerCore(settings), settings)


def _message(partition: int, offset: int, user: int) -> Message:
    return Message(
        "ratings", partition, offset, encode(RatingEvent(user, 10 + offset, 4.0, offset))
    )


def _nothing() -> None:
    return None


def test_a_worker_runs_without_baselines_and_checkpoints_in_its_own_folder(
    tmp_path: Path,
) -> None:
    settings = scale_out_settings(_settings(tmp_path))
    assert settings.stream.baselines is False
    assert settings.trainer.checkpoint_path == tmp_path / "workers" / "w1" / "trainer.ckpt"
    # Full retrains keep their schedule: the group's leader follows it (not each learner).
    assert settings.learner.retrain == _settings(tmp_path).learner.retrain


def _bases(parts: list[Entry]) -> list[ModelBase]:
    assembly, bases = BaseAssembly(), []
    for part in parts:
        whole = assembly.add(part.value, part.offset, part.sender)
        if whole is not None:
            bases.append(ModelBase.from_bytes(whole))
    return bases


def _refitting_member(tmp_path: Path, name: str, **trainer: int) -> GroupMember:
    settings = _settings(tmp_path)
    retrain = RetrainConfig(every_events=3, where="inline", epochs=1)
    settings = scale_out_settings(
        settings.model_copy(
            update={
                "learner": dataclasses.replace(settings.learner, retrain=retrain),
                "trainer": settings.trainer.model_copy(update={"worker_name": name, **trainer}),
            }
        )
    )
    return GroupMember(TrainerCore(settings), settings)


def test_only_the_leader_starts_a_refit_of_the_group(tmp_path: Path) -> None:
    member = _refitting_member(tmp_path, "w1")
    log = _attach_log(member)
    member.assigned = {"ratings/0"}
    member.handle([_message(0, offset, 1 + offset % 2) for offset in range(4)], _nothing)
    assert member.refit_due()
    learner = member.core.processor.learner
    assert learner.version == 1, "a worker's learner retrains on no schedule of its own"
    member.refit()
    member.refit()
    assert log.parts == [], "a worker that does not lead started a refit"
    member.core.processor.lead(True)
    member.refit()  # starts it (inline: done at once)
    member.refit()  # publishes it; every worker adopts it when it reads it, this one too
    assert [base.events for base in _bases(log.parts)] == [4]
    assert learner.version == 1
    assert member.status().bases_published == 1
    member.refit()  # its own base not read back yet: the next one is not due
    assert not learner.retrain_running


def test_a_worker_learns_only_the_messages_of_its_partitions(member: GroupMember) -> None:
    member.assigned = {"ratings/0"}
    messages = [_message(0, 0, 1), _message(1, 0, 2), _message(0, 1, 1)]
    handled = member.handle(messages, between=_nothing)
    assert handled.learned_per_message == [1, 0, 1]
    assert member.status().dropped_messages == 1
    # The other partition's message is its owner's: its position here has not moved.
    assert member.replica.position("ratings/1") == 0
    assert member.replica.position("ratings/0") == 2


def test_a_long_take_is_learned_in_chunks_with_an_exchange_after_each(
    member: GroupMember,
) -> None:
    member.assigned = {"ratings/0"}
    log = _attach_log(member)

    def exchange() -> None:
        if member.exchange_due():
            member.publish()

    handled = member.handle([_message(0, offset, 1) for offset in range(10)], between=exchange)
    member.publish(wait=True)  # the last one in flight, and the tail
    assert handled.learned == 10
    # exchange_every_events = 3: no update waits for the whole take, and each one holds the
    # positions of exactly what it learned.
    assert [update.events for update in log.sent] == [3, 3, 3, 1]
    assert [update.positions for update in log.sent] == [
        {"ratings/0": 3},
        {"ratings/0": 6},
        {"ratings/0": 9},
        {"ratings/0": 10},
    ]


def test_an_update_that_could_not_be_sent_is_sent_first_next_time(member: GroupMember) -> None:
    member.assigned = {"ratings/0"}
    log = _FailingLog()
    member._log = log  # type: ignore[assignment]
    member.handle([_message(0, offset, 1) for offset in range(3)], between=_nothing)
    assert member.exchange_due()
    member.publish()  # in flight: settled by the next publish
    with pytest.raises(TimeoutError):
        member.publish()
    # Nothing it learned may be committed while the update is not on the brokers.
    assert member.durable() == {}
    member.handle([_message(0, 3, 1)], between=_nothing)
    log.failing = False
    member.publish()  # the refused one, again
    member.publish(wait=True)  # settles it, then the next one, held once it returns
    assert [update.sequence for update in log.sent] == [1, 2]
    assert [update.events for update in log.sent] == [3, 1]
    assert member.durable() == {"ratings/0": 4}


def test_a_checkpoint_waits_for_every_update_to_be_held(member: GroupMember) -> None:
    member.assigned = {"ratings/0"}
    log = _attach_log(member)
    member.handle([_message(0, offset, 1) for offset in range(2)], between=_nothing)
    member.publish()
    assert log.sent == []  # not waited for yet
    member.publish(wait=True)
    assert [update.events for update in log.sent] == [2]
    assert member.durable() == {"ratings/0": 2}


def test_only_the_worker_with_partition_0_publishes_the_model(member: GroupMember) -> None:
    def publishing() -> tuple[bool, bool]:
        return member.leader, member.core.processor.publishes_model

    assert publishing() == (False, False)
    _attach_log(member)
    member.catch_up = lambda: 0  # type: ignore[method-assign]
    member.assign(["ratings/1", "ratings/0"])
    assert publishing() == (True, True)
    member.revoke(["ratings/0"])
    assert publishing() == (False, False)


def test_a_workers_metrics_say_its_part_in_the_group(member: GroupMember) -> None:
    member.assigned = {"ratings/0", "ratings/2"}
    member.handle([_message(0, 0, 1), _message(2, 0, 3)], between=_nothing)
    telemetry = TrainerTelemetry()
    status = member.status()
    telemetry.group(status)
    telemetry.update(replace(member.core.status(), group=status))
    families = {
        family.name: family
        for family in text_string_to_metric_families(telemetry.exposition().decode())
    }
    assert families["recsys_trainer_events_held"].samples[0].value == 2
    assert families["recsys_trainer_partitions"].samples[0].value == 2
    assert families["recsys_trainer_leader"].samples[0].value == 0
    assert "recsys_trainer_update_staleness_seconds" in families


@pytest.mark.parametrize(
    ("other_at", "published_ago", "waits"),
    [
        (0.0, 0.0, True),
        (4.0, 0.0, False),  # the other is not behind
        # An update older than a few exchange periods (3,600 s here): of a worker gone, or
        # read back at a restart.
        (0.0, 4 * 3600.0, False),
    ],
)
def test_a_worker_ahead_of_the_group_in_event_time_waits_for_it(
    member: GroupMember, other_at: float, published_ago: float, waits: bool
) -> None:
    log = _attach_log(member)
    trainer = member.settings.trainer.model_copy(
        update={"max_event_time_lead_s": 1.0, "align_wait_s": 0.05}
    )
    member.settings = member.settings.model_copy(update={"trainer": trainer})
    # Another worker's latest update reached event time ``other_at``.
    member._event_times["other"] = (other_at, time.time() - published_ago)
    member.assigned = {"ratings/0"}
    # Two chunks of 3 events (timestamps 0..5); the first update reaches event time 2.
    member.handle([_message(0, offset, 1) for offset in range(6)], between=member.publish)
    assert log.sent[0].evaluation.last_timestamp == 2.0
    aligned = member.status().aligned_s
    assert (aligned >= 0.05) if waits else (aligned == 0.0)


def _refit_in_parts(tmp_path: Path) -> tuple[GroupMember, GroupMember, _FailingLog]:
    """A leader that published a refit in parts (on ``log``), and another worker."""
    leader = _refitting_member(tmp_path, "w1", base_part_bytes=16 * 1024)
    other = _refitting_member(tmp_path, "w2")
    log = _attach_log(leader)
    leader.assigned = {"ratings/0"}
    leader.handle([_message(0, offset, 1 + offset % 2) for offset in range(4)], _nothing)
    leader.core.processor.lead(True)
    leader.refit()  # starts it (inline: done at once)
    leader.refit()  # publishes it
    return leader, other, log


def test_a_refit_in_parts_is_adopted_where_its_last_part_lies(tmp_path: Path) -> None:
    _, other, log = _refit_in_parts(tmp_path)
    parts = log.parts
    assert len(parts) > 2
    learner = other.core.processor.learner
    other._apply_all(parts[:-1])
    assert learner.version == 1, "adopted before its last part"
    assert other._assembly.first_offset == 0, "a checkpoint now would skip its first parts"
    other._apply_all(parts[-1:])
    assert learner.version == 2
    assert other._assembly.first_offset is None


def test_an_incomplete_refit_is_dropped_when_its_sender_moves_on(tmp_path: Path) -> None:
    leader, other, log = _refit_in_parts(tmp_path)
    update = leader.replica.take()
    origin = leader.replica.origin
    # The sender's next update comes before its last part: it gave that refit up.
    other._apply_all(
        [*log.parts[:-1], Entry(origin, update.to_bytes(), time.time(), len(log.parts))]
    )
    assert other._assembly.first_offset is None
    other._apply_all(log.parts[-1:])  # a last part alone is no refit
    assert other.core.processor.learner.version == 1
