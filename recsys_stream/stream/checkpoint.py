"""Checkpoints: the whole state of a stream processor in one versioned file.

A checkpoint holds the learner (model, optimiser, id maps, histories, statistics, replay
reservoir), the evaluator (catalogue, per-event records, baselines) and the stream position, so a
restarted run continues exactly where it stopped. Files are written to a temporary name and
renamed, so a crash mid-write never leaves a half checkpoint; they load with
``torch.load(weights_only=True)``, so a checkpoint cannot run code.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from recsys_stream.files import atomic_writer

if TYPE_CHECKING:
    from recsys_stream.stream.processor import StreamProcessor

FORMAT = "recsys-stream-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: unreadable, of another format or version."""


def _encode(value: Any) -> Any:
    """Plain containers, tensors and numbers only (what the safe loader accepts)."""
    if isinstance(value, np.ndarray):
        return {"__numpy__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encode(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__numpy__"}:
            return value["__numpy__"].numpy()
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value


def save_checkpoint(path: Path, processor: StreamProcessor, positions: dict[str, int]) -> None:
    """Write the processor's state and the stream ``positions``: for each source partition
    (``"topic/partition"``), the offset of the next message not yet learned."""
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": time.time(),
        "positions": dict(positions),
        "processor": processor.state_dict(),
    }
    with atomic_writer(path) as out:
        torch.save(_encode(state), out)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint; raises :class:`CheckpointError` when it cannot be used."""
    try:
        raw = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a recsys-stream checkpoint")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {raw.get('format_version')}, "
            f"this version reads {FORMAT_VERSION}"
        )
    decoded: dict[str, Any] = _decode(raw)
    return decoded


def restore_processor(processor: StreamProcessor, state: dict[str, Any]) -> None:
    """Load a checkpoint's processor state into a processor built with the same settings."""
    processor.load_state_dict(state["processor"])
