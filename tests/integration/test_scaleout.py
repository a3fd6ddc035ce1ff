"""Several trainer workers on one topic against a real broker: users split by partition, one
model kept through the updates topic, every event learned exactly once when workers join, leave
or are killed."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kafka import KafkaAdminClient, TopicPartition

from recsys_stream.settings import KafkaSettings, RedisSettings
from recsys_stream.stream import load_checkpoint
from replay.service import ReplayConfig, Replayer
from scripts.trainer_process import TrainerProcess
from services.cache.redis_cache import RedisCache
from tests.integration.processes import end_offsets, first_events

pytestmark = pytest.mark.integration
EVENTS = 12_000
PARTITIONS = 6


@pytest.fixture(scope="module")
def ratings() -> pd.DataFrame:
    return first_events(EVENTS)


def _replay(servers: str, topic: str, frame: pd.DataFrame) -> None:
    # Small envelopes: many messages per partition, so that a kill or a join lands mid-stream.
    kafka = KafkaSettings(
        bootstrap_servers=servers, topic=topic, partitions=PARTITIONS, envelope_max_events=20
    )
    summary = Replayer(ReplayConfig(kafka=kafka), "test").run(frame)
    assert summary.acknowledged == len(frame)


class Group:
    """The workers of one app id, sharing a checkpoint folder as a volume would be shared."""

    def __init__(self, servers: str, topic: str, root: Path, started: list[TrainerProcess]):
        self.servers, self.topic, self.root, self.started = servers, topic, root, started
        self.workers: dict[str, TrainerProcess] = {}

    def start(self, name: str, **settings: str) -> TrainerProcess:
        workdir = self.root / name
        workdir.mkdir(exist_ok=True)
        defaults = {
            "RECSYS_TRAINER__SCALE_OUT": "true",
            "RECSYS_TRAINER__WORKER_NAME": name,
            "RECSYS_TRAINER__CHECKPOINT_PATH": str(self.root / "checkpoints" / "trainer.ckpt"),
            "RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS": "2000",
            "RECSYS_KAFKA__UPDATES_TOPIC": f"{self.topic}.updates",
            "RECSYS_KAFKA__PARTITIONS": str(PARTITIONS),
            "RECSYS_TRAINER__HTTP_PORT": "0",
            "RECSYS_TRAINER__SINK": "memory",
            "RECSYS_TRAINER__TAKE_MESSAGES": "4",
        }
        worker = TrainerProcess(self.servers, self.topic, workdir, **(defaults | settings))
        self.started.append(worker)
        self.workers[name] = worker
        worker.start()
        return worker

    def wait_all(
        self, condition: Callable[[dict[str, Any]], bool], names: list[str]
    ) -> dict[str, dict[str, Any]]:
        return {name: self.workers[name].wait_for(condition) for name in names}

    def converged(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Wait until each named worker's model holds every event and knows every partition's
        end: the group learned the whole stream."""
        ends = end_offsets(self.servers, self.topic)

        def whole(status: dict[str, Any]) -> bool:
            group = status["group"]
            return (
                group is not None
                and group["events_held"] >= EVENTS
                and (status["positions"] == ends)
            )

        return self.wait_all(whole, names)


def _assigned(status: dict[str, Any]) -> bool:
    return status["group"] is not None and len(status["group"]["assigned"]) > 0


@pytest.fixture
def group(kafka_bootstrap_servers: str, tmp_path: Path, trainers: list[TrainerProcess]) -> Group:
    return Group(kafka_bootstrap_servers, f"ratings-{uuid.uuid4().hex[:8]}", tmp_path, trainers)


def test_two_workers_split_the_partitions_and_learn_every_event_once(
    group: Group, ratings: pd.DataFrame
) -> None:
    # Three workers: test_a_worker_killed_mid_stream_... (the same checks, and a kill).
    names = ["w0", "w1"]
    for name in names:
        group.start(name)
    group.wait_all(_assigned, names)
    _replay(group.servers, group.topic, ratings)
    final = group.converged(names)

    assigned = [p for status in final.values() for p in status["group"]["assigned"]]
    assert sorted(assigned) == sorted(f"{group.topic}/{p}" for p in range(PARTITIONS))
    # One model: every worker holds each event once; each event was learned by one worker.
    assert all(status["group"]["events_held"] == EVENTS for status in final.values())
    assert sum(status["group"]["events_learned_here"] for status in final.values()) == EVENTS
    assert [status["group"]["leader"] for status in final.values()].count(True) == 1
    # The group's figures cover the whole stream on every worker.
    assert all(status["events_evaluated"] == EVENTS for status in final.values())


def test_a_full_retrain_runs_once_for_the_group_and_every_worker_swaps_to_it(
    group: Group, ratings: pd.DataFrame
) -> None:
    names = ["w0", "w1"]
    for name in names:
        group.start(
            name,
            RECSYS_LEARNER__RETRAIN__EVERY_EVENTS="4000",
            RECSYS_LEARNER__RETRAIN__EPOCHS="1",
            # Each refit (~1.5 MB here) in several messages, as a large model's must be.
            RECSYS_TRAINER__BASE_PART_BYTES=str(256 * 1024),
        )
    group.wait_all(_assigned, names)
    _replay(group.servers, group.topic, ratings)
    group.converged(names)
    leader = next(n for n in names if group.workers[n].status()["group"]["leader"])
    # The stream is learned; the refit running then (if one is) ends, is published, and the
    # group swaps it in (the leader too: when it reads it back).
    done = group.workers[leader].wait_for(
        lambda s: (
            not s["retrain_running"]
            and s["group"]["bases_published"] <= s["group"]["bases_adopted"]
        )
    )
    version = done["model_version"]
    final = group.wait_all(lambda s: s["model_version"] == version, names)

    assert version >= 2, "the group never retrained"
    published = {name: status["group"]["bases_published"] for name, status in final.items()}
    assert published[leader] == version - 1
    assert sum(published.values()) == version - 1, "a worker that does not lead refitted"
    assert all(status["group"]["bases_adopted"] == version - 1 for status in final.values())
    assert all(status["retrains_completed"] == version - 1 for status in final.values())
    # Still one model holding each event once, each learned by one worker; the events after
    # each refit's snapshot were learned again in it by their users' worker.
    assert all(status["group"]["events_held"] == EVENTS for status in final.values())
    assert sum(status["group"]["events_learned_here"] for status in final.values()) == EVENTS
    assert sum(status["group"]["events_relearned"] for status in final.values()) > 0


def test_a_leader_killed_during_a_refit_leaves_the_refit_to_the_next_leader(
    group: Group, ratings: pd.DataFrame
) -> None:
    half = len(ratings) // 2
    names = ["w0", "w1"]
    retrains = {
        "RECSYS_LEARNER__RETRAIN__EVERY_EVENTS": "4000",
        "RECSYS_LEARNER__RETRAIN__EPOCHS": "1",
    }
    for name in names:
        group.start(name, **retrains)
    group.wait_all(_assigned, names)
    _replay(group.servers, group.topic, ratings.iloc[:half])
    leader = next(
        name
        for name, status in group.wait_all(_assigned, names).items()
        if status["group"]["leader"]
    )
    survivor = next(name for name in names if name != leader)
    group.workers[leader].wait_for(lambda s: s["retrain_running"])
    group.workers[leader].kill()  # its refit dies with it: nothing of it was published
    _replay(group.servers, group.topic, ratings.iloc[half:])
    group.converged([survivor])
    # The survivor holds partition 0 now: it leads, and the group's refit is its to run.
    done = group.workers[survivor].wait_for(
        lambda s: (
            s["group"]["leader"]
            and s["group"]["bases_published"] >= 1
            and not s["retrain_running"]
            and s["group"]["bases_published"] <= s["group"]["bases_adopted"]
        )
    )
    # Back from its checkpoint, the killed worker adopts what the group published since.
    group.start(leader, **retrains)
    final = group.converged(names)
    version = done["model_version"]
    assert version >= 2
    again = group.workers[leader].wait_for(lambda s: s["model_version"] == version)
    assert again["group"]["events_held"] == EVENTS
    assert final[survivor]["group"]["events_held"] == EVENTS


def test_a_worker_killed_mid_stream_hands_its_partitions_over_and_nothing_is_lost_or_repeated(
    group: Group, ratings: pd.DataFrame
) -> None:
    half = len(ratings) // 2
    names = ["w0", "w1", "w2"]
    group.start("w0")
    group.start("w1")
    # The victim publishes nothing before it dies (no update, no checkpoint after the joins):
    # everything it learns is lost with it and must be learned again by the others, once.
    never = str(10**9)
    victim = group.start(
        "w2",
        RECSYS_TRAINER__CHECKPOINT_EVERY_EVENTS=never,
        RECSYS_TRAINER__CHECKPOINT_EVERY_SECONDS=never,
        RECSYS_TRAINER__EXCHANGE_EVERY_EVENTS=never,
        RECSYS_TRAINER__EXCHANGE_EVERY_S=never,
    )
    group.wait_all(_assigned, names)
    _replay(group.servers, group.topic, ratings.iloc[:half])
    ends = end_offsets(group.servers, group.topic)

    def learned_its_share(status: dict[str, Any]) -> bool:
        mine = status["group"]["assigned"]
        return all(status["positions"].get(source) == ends[source] for source in mine)

    before = victim.wait_for(learned_its_share)
    victim.kill()
    assert before["events_learned"] > 0
    assert before["group"]["pending_events"] == before["events_learned"]
    _replay(group.servers, group.topic, ratings.iloc[half:])
    final = group.converged(["w0", "w1"])
    assert all(status["group"]["events_held"] == EVENTS for status in final.values())
    assert all(status["events_evaluated"] == EVENTS for status in final.values())
    # What the victim learned was learned again by the survivors, and nothing else twice.
    assert sum(status["group"]["events_learned_here"] for status in final.values()) == EVENTS
    # Back under its name with no checkpoint of its own, it starts from the others'.
    group.start("w2")
    again = group.converged(["w2"])["w2"]
    assert again["group"]["events_held"] == EVENTS
    assert again["events_evaluated"] == EVENTS


def test_a_worker_added_mid_stream_takes_partitions_over(
    group: Group, ratings: pd.DataFrame
) -> None:
    half = len(ratings) // 2
    first = ["w0", "w1"]
    for name in first:
        group.start(name)
    group.wait_all(_assigned, first)
    _replay(group.servers, group.topic, ratings.iloc[:half])
    group.workers["w0"].wait_for(lambda s: s["group"]["events_held"] == half)
    group.start("w2")  # no checkpoint of its own: starts from the group's
    group.wait_all(_assigned, ["w2"])
    _replay(group.servers, group.topic, ratings.iloc[half:])
    final = group.converged(["w0", "w1", "w2"])
    assert final["w2"]["group"]["events_learned_here"] > 0, "the new worker learned nothing"
    assert all(status["group"]["events_held"] == EVENTS for status in final.values())
    assert sum(status["group"]["events_learned_here"] for status in final.values()) == EVENTS
    # A worker stopped cleanly comes back from its own checkpoint: still one model.
    code, _ = group.workers["w1"].terminate()
    assert code == 0
    group.start("w1")
    again = group.converged(["w1"])["w1"]
    assert again["group"]["events_held"] == EVENTS
    assert again["restored_from"] is not None


def test_a_worker_whose_checkpoint_the_updates_topic_outlived_starts_from_anothers(
    group: Group, ratings: pd.DataFrame
) -> None:
    half = len(ratings) // 2
    for name in ("w0", "w1"):
        group.start(name)
    group.wait_all(_assigned, ["w0", "w1"])
    _replay(group.servers, group.topic, ratings.iloc[:half])
    group.workers["w0"].wait_for(lambda s: s["group"]["events_held"] == half)
    code, _ = group.workers["w0"].terminate()
    assert code == 0
    _replay(group.servers, group.topic, ratings.iloc[half:])
    group.converged(["w1"])
    code, _ = group.workers["w1"].terminate()
    assert code == 0
    # Retention removes every update older than w1's last checkpoint: w0's own checkpoint
    # needs updates that are gone.
    checkpoints = group.root / "checkpoints" / "workers"
    offsets = {
        name: load_checkpoint(checkpoints / name / "trainer.ckpt")["extra"]["group"][
            "updates_offset"
        ]
        for name in ("w0", "w1")
    }
    assert offsets["w0"] < offsets["w1"]
    admin = KafkaAdminClient(bootstrap_servers=group.servers)
    try:
        admin.delete_records({TopicPartition(f"{group.topic}.updates", 0): offsets["w1"]})
    finally:
        admin.close()
    group.start("w0")
    again = group.converged(["w0"])["w0"]
    assert again["group"]["events_held"] == EVENTS
    assert again["events_evaluated"] == EVENTS


def test_the_group_publishes_one_view_to_redis(
    group: Group, ratings: pd.DataFrame, redis_url: str
) -> None:
    names = ["w0", "w1"]
    for name in names:
        group.start(name, RECSYS_TRAINER__SINK="redis", REDIS_URL=redis_url)
    group.wait_all(_assigned, names)
    _replay(group.servers, group.topic, ratings)
    final = group.converged(names)
    # The leader publishes the group's figures once the stream is quiet: the whole stream's.
    leader = next(name for name, status in final.items() if status["group"]["leader"])
    group.workers[leader].wait_for(lambda s: s["report_events"] == EVENTS)
    cache = RedisCache(RedisSettings(url=redis_url, key_prefix=f"{group.topic}:"))
    figures = cache.metrics()
    assert figures is not None
    assert figures.events == EVENTS
    assert figures.users == ratings["user_id"].nunique()
    snapshot = cache.snapshot()
    assert snapshot is not None
    assert set(snapshot.item_ids.tolist()) == set(ratings["item_id"].unique().tolist())

    # Each worker published the lists of its own users: every user of the stream has one.
    async def lists() -> list[Any]:
        return [await cache.top_k(int(user)) for user in ratings["user_id"].unique()]

    assert all(entry is not None for entry in asyncio.run(lists()))
