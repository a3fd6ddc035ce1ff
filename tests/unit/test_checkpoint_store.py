"""Checkpoints kept, checked and set aside: the last N on disk with a checksum, an unreadable one
moved aside with its reason (never overwritten), the newest readable one restored, and a failed
write that leaves nothing behind. Real files in a temporary directory; no mocks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from recsys_stream.events import RatingEvent, encode
from recsys_stream.settings import Settings
from recsys_stream.stream import CheckpointError, CheckpointStore, load_checkpoint
from recsys_stream.stream.checkpoint import MAGIC
from services.trainer.worker import Message, TrainerCore


def _core(path: Path, keep: int = 3) -> TrainerCore:
    settings = Settings(
        trainer={"checkpoint_path": path, "sink": "memory", "checkpoint_keep": keep},  # type: ignore[arg-type]
        stream={"batch_size": 50, "baselines": False},  # type: ignore[arg-type]
        learner={"retrain": {"every_events": None}, "device": "cpu"},  # type: ignore[arg-type]
    )
    return TrainerCore(settings)


def _learn(core: TrainerCore, start: int, count: int) -> None:
    messages = [
        Message("ratings", 0, offset, encode(RatingEvent(offset % 13, offset % 29, 4.0, offset)))
        for offset in range(start, start + count)
    ]
    messages.append(Message("ratings", 0, start + count, b"{not json"))
    core.handle(messages)


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """Three checkpoints written: 100, 200 and 300 events (and a dead letter each)."""
    path = tmp_path / "trainer.ckpt"
    core = _core(path)
    for round_ in range(3):
        _learn(core, round_ * 101, 100)
        core.save_checkpoint()
    return path


def test_the_last_n_checkpoints_are_kept_with_a_checksum(tmp_path: Path) -> None:
    path = tmp_path / "trainer.ckpt"
    core = _core(path, keep=2)
    for round_ in range(4):
        _learn(core, round_ * 101, 100)
        core.save_checkpoint()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trainer.ckpt", "trainer.ckpt.3"]
    assert path.read_bytes().startswith(MAGIC)
    state = load_checkpoint(path)
    assert state["extra"]["sequence"] == 4
    assert state["positions"] == {"ratings/0": 404}
    assert load_checkpoint(tmp_path / "trainer.ckpt.3")["positions"] == {"ratings/0": 303}


@pytest.mark.parametrize("damage", ["truncated", "garbage", "one_bit", "older_version"])
def test_an_unreadable_checkpoint_is_set_aside_and_the_previous_one_restored(
    three: Path, damage: str
) -> None:
    data = three.read_bytes()
    if damage == "truncated":
        three.write_bytes(data[: len(data) // 3])
    elif damage == "garbage":
        three.write_bytes(os.urandom(4096))
    elif damage == "one_bit":
        three.write_bytes(data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    else:
        torch.save({"format": "recsys-stream-checkpoint", "format_version": 0}, three)
    evidence = three.read_bytes()
    core = _core(three)
    assert core.restore()
    assert core.positions == {"ratings/0": 202}
    assert core.processor.learner.events_learned == 200
    assert core.dead_letters_by_code == {"invalid_json": 2}
    status = core.status()
    assert status.restored_from == str(three.with_name("trainer.ckpt.2"))
    assert status.quarantined == 1
    [kept] = three.parent.glob("trainer.ckpt.corrupt-*[0-9]")
    assert kept.read_bytes() == evidence  # the evidence, untouched
    reason = kept.with_name(kept.name + ".reason").read_text()
    assert {"truncated": "checksum", "garbage": "cannot read", "one_bit": "checksum"}.get(
        damage, "format version 0"
    ) in reason
    # The next checkpoint follows the one restored, and never overwrites the evidence.
    _learn(core, 202, 50)
    core.save_checkpoint()
    assert load_checkpoint(three)["extra"]["sequence"] == 3
    assert kept.read_bytes() == evidence


def test_with_no_readable_checkpoint_the_model_starts_empty_from_the_beginning(
    tmp_path: Path,
) -> None:
    path = tmp_path / "trainer.ckpt"
    path.write_bytes(b"not a checkpoint")
    core = _core(path)
    assert not core.restore()
    assert core.positions == {}  # every partition is read from its start
    assert core.status().quarantined == 1
    assert not path.exists()


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(
    three: Path,
) -> None:
    core = _core(three)
    assert core.restore()
    _learn(core, 303, 100)
    # The numbered name the current checkpoint moves to is taken by a directory: the write
    # fails after the temporary file was written.
    (three.parent / "trainer.ckpt.3").mkdir()
    with pytest.raises(OSError, match=r"trainer\.ckpt"):
        core.save_checkpoint()
    assert core.status().checkpoint.failures == 1
    assert core.status().checkpoint.failing_since is not None
    assert not list(three.parent.glob(".*.tmp"))
    assert load_checkpoint(three)["positions"] == {"ratings/0": 303}
    (three.parent / "trainer.ckpt.3").rmdir()
    core.save_checkpoint()  # the disk is back
    assert core.status().checkpoint.failing_since is None
    assert load_checkpoint(three)["positions"] == {"ratings/0": 404}


def test_temporary_files_of_dead_writers_are_removed_at_restore(three: Path) -> None:
    dead = three.with_name(".trainer.ckpt.999999999.tmp")
    dead.write_bytes(b"half a checkpoint")
    mine = three.with_name(f".trainer.ckpt.{os.getpid()}.tmp")
    mine.write_bytes(b"half a checkpoint")
    store = CheckpointStore(three)
    restored = store.restore()
    assert restored.path == three
    assert not dead.exists()
    assert not mine.exists()


def test_a_checkpoint_of_format_one_without_checksum_is_still_read(three: Path) -> None:
    state = load_checkpoint(three)
    body = three.read_bytes()[len(MAGIC) + 32 :]
    legacy = three.with_name("legacy.ckpt")
    legacy.write_bytes(body)
    assert load_checkpoint(legacy)["positions"] == state["positions"]
    legacy.write_bytes(MAGIC + b"\0" * 32 + body)
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(legacy)
