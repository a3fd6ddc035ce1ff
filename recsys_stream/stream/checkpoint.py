"""Checkpoints: the whole state of a stream processor in one versioned, checksummed file.

A checkpoint holds the learner (model, optimiser, id maps, histories, statistics, replay
reservoir), the evaluator (catalogue, per-event records, baselines) and the stream position, so a
restarted run continues exactly where it stopped. Files are written to a temporary name, flushed
to the disk and renamed, so a crash mid-write never leaves a half checkpoint; they load with
``torch.load(weights_only=True)``, so a checkpoint cannot run code.

The file is ``MAGIC``, the SHA-256 of the rest, then the ``torch.save`` payload: a truncated or
damaged file is refused before it is unpickled (files of format 1, without the checksum, are
still read). :class:`CheckpointStore` keeps the last ``keep`` checkpoints of one path, moves an
unreadable one aside with the reason (never overwritten, never deleted) and restores the newest
readable one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import torch

from recsys_stream.files import atomic_writer

if TYPE_CHECKING:
    from recsys_stream.stream.processor import StreamProcessor

log = logging.getLogger(__name__)

FORMAT = "recsys-stream-checkpoint"
FORMAT_VERSION = 3
"""Version of the payload (the processor's state); 2 since popularity priors at several
horizons (the features' counts and the model's prior weights), 3 since the counts' clock."""
MAGIC: Final = b"RSCKPT\x00\x02"
"""The first bytes of a checkpoint file with a checksum (file format 2)."""
_DIGEST_BYTES: Final = 32


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


def checkpoint_bytes(
    processor: StreamProcessor, positions: dict[str, int], extra: dict[str, Any] | None = None
) -> bytes:
    """The file's bytes: the processor's state and the stream ``positions`` (for each source
    partition, ``"topic/partition"``, the offset of the next message not yet learned), with
    ``extra`` (plain values) under ``"extra"``."""
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": time.time(),
        "positions": dict(positions),
        "processor": processor.state_dict(),
        "extra": dict(extra or {}),
    }
    payload = io.BytesIO()
    torch.save(_encode(state), payload)
    body = payload.getvalue()
    return MAGIC + hashlib.sha256(body).digest() + body


def save_checkpoint(
    path: Path,
    processor: StreamProcessor,
    positions: dict[str, int],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint to ``path`` (atomically, flushed to the disk)."""
    data = checkpoint_bytes(processor, positions, extra)
    with atomic_writer(path) as out:
        out.write(data)


def parse_checkpoint(data: bytes, name: str = "checkpoint") -> dict[str, Any]:
    """A checkpoint's state from its bytes; :class:`CheckpointError` when it cannot be used
    (truncated, damaged, not a checkpoint, another version)."""
    if data.startswith(MAGIC):
        digest = data[len(MAGIC) : len(MAGIC) + _DIGEST_BYTES]
        body = data[len(MAGIC) + _DIGEST_BYTES :]
        if len(digest) < _DIGEST_BYTES or hashlib.sha256(body).digest() != digest:
            raise CheckpointError(f"{name} fails its checksum (truncated or damaged)")
    else:
        body = data  # format 1: no checksum, torch's zip checks what it can
    try:
        raw = torch.load(io.BytesIO(body), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"cannot read checkpoint {name}: {exc}") from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a recsys-stream checkpoint")
    if raw.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{name} has format version {raw.get('format_version')}, "
            f"this version reads {FORMAT_VERSION}"
        )
    decoded: dict[str, Any] = _decode(raw)
    decoded.setdefault("extra", {})
    return decoded


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read and check a checkpoint; raises :class:`CheckpointError` when it cannot be used."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    return parse_checkpoint(data, str(path))


def restore_processor(processor: StreamProcessor, state: dict[str, Any]) -> None:
    """Load a checkpoint's processor state into a processor built with the same settings."""
    processor.load_state_dict(state["processor"])


@dataclass(frozen=True, slots=True)
class Quarantined:
    """An unreadable checkpoint, moved aside (``moved_to``) with the reason beside it."""

    path: Path
    moved_to: Path
    reason: str


@dataclass(frozen=True)
class Restored:
    """What :meth:`CheckpointStore.restore` found."""

    path: Path | None
    """The checkpoint read (None: none was usable)."""
    state: dict[str, Any] | None
    sequence: int
    quarantined: list[Quarantined] = field(default_factory=list)

    @property
    def fell_back(self) -> bool:
        """A newer checkpoint was unreadable: an older one (or none) was restored."""
        return bool(self.quarantined)


_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.tmp$")


class CheckpointStore:
    """The checkpoints of one path: the newest at ``path``, up to ``keep - 1`` older ones
    beside it as ``<name>.<sequence>``.

    A write goes to a temporary file first (removed if the write fails), then the checkpoint
    at ``path`` moves to its numbered name and the new one takes its place; the oldest beyond
    ``keep`` are removed. A crash between the two renames leaves the newest only under its
    number: :meth:`restore` looks at every candidate, newest first.
    """

    def __init__(self, path: Path, keep: int = 3) -> None:
        if keep < 1:
            raise ValueError("keep at least one checkpoint")
        self.path = path
        self.keep = keep
        self.sequence = 0
        """Sequence number of the newest checkpoint written or restored (0: none)."""

    def _numbered(self, sequence: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{sequence}")

    def history(self) -> list[tuple[int, Path]]:
        """The numbered (older) checkpoints, newest first."""
        pattern = re.compile(rf"^{re.escape(self.path.name)}\.(\d+)$")
        if not self.path.parent.is_dir():
            return []
        found = [
            (int(match.group(1)), entry)
            for entry in self.path.parent.iterdir()
            if (match := pattern.match(entry.name))
        ]
        return sorted(found, reverse=True)

    def candidates(self) -> list[Path]:
        """Every checkpoint that may be restored, newest first."""
        newest = [self.path] if self.path.exists() else []
        return newest + [entry for _, entry in self.history()]

    def clean_temporary(self) -> list[Path]:
        """Remove the temporary files that writers which are gone left behind (a process
        killed mid-write); those of a live process are left alone."""
        removed: list[Path] = []
        if not self.path.parent.is_dir():
            return removed
        for entry in self.path.parent.iterdir():
            match = _TEMPORARY.match(entry.name)
            if match is None or not match.group("name").startswith(self.path.name):
                continue
            pid = int(match.group("pid"))
            if pid != os.getpid() and _alive(pid):
                continue
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
        return removed

    def restore(self) -> Restored:
        """The newest readable checkpoint; each unreadable one on the way is quarantined."""
        for entry in self.clean_temporary():
            log.warning("removed %s, left by a checkpoint write that did not finish", entry)
        quarantined: list[Quarantined] = []
        for candidate in self.candidates():
            try:
                state = load_checkpoint(candidate)
            except CheckpointError as exc:
                quarantined.append(self.quarantine(candidate, str(exc)))
                continue
            sequence = int(state["extra"].get("sequence", 0))
            if candidate != self.path and sequence == 0:
                sequence = int(candidate.name.rsplit(".", 1)[1])
            self.sequence = max(sequence, *(n for n, _ in self.history()), 0)
            return Restored(candidate, state, sequence, quarantined)
        self.sequence = max((n for n, _ in self.history()), default=0)
        return Restored(None, None, 0, quarantined)

    def quarantine(self, path: Path, reason: str) -> Quarantined:
        """Move ``path`` aside as ``<name>.corrupt-<unix time>`` (never over another file),
        with the reason in ``<that>.reason``."""
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        moved = path.with_name(f"{path.name}.corrupt-{stamp}")
        counter = 1
        while moved.exists():
            moved = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
            counter += 1
        os.replace(path, moved)
        with contextlib.suppress(OSError):  # a full disk must not stop the restore
            moved.with_name(moved.name + ".reason").write_text(reason + "\n")
        log.warning(
            "checkpoint %s is unusable (%s): moved to %s",
            path,
            reason,
            moved,
            extra={"checkpoint": str(path), "moved_to": str(moved), "reason": reason},
        )
        return Quarantined(path, moved, reason)

    def save(
        self,
        processor: StreamProcessor,
        positions: dict[str, int],
        extra: dict[str, Any] | None = None,
    ) -> Path:
        """Write the next checkpoint to ``path``; the previous one keeps its number."""
        sequence = self.sequence + 1
        data = checkpoint_bytes(processor, positions, {**(extra or {}), "sequence": sequence})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            with temporary.open("wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            if self.path.exists() and self.keep > 1:
                os.replace(self.path, self._numbered(self.sequence))
            os.replace(temporary, self.path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _sync_directory(self.path.parent)
        self.sequence = sequence
        for _, old in self.history()[max(0, self.keep - 1) :]:
            with contextlib.suppress(OSError):
                old.unlink()
        return self.path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sync_directory(directory: Path) -> None:
    """Make the renames in ``directory`` durable (where the platform allows)."""
    with contextlib.suppress(OSError):
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
