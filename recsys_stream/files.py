"""Files written whole or not at all.

Checkpoints, the trainer's status and the replay's progress are read by another process (or by
the same one after a crash) at any moment: each is written to a temporary file beside its
target and renamed over it, so a reader sees the old version or the new one, never half of one.
A failed write leaves no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_writer(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary file that replaces ``path`` when the block ends without an exception.

    ``durable`` flushes the data to the disk before the rename, so that what replaced ``path``
    survives a power cut too (checkpoints); without it only the rename's atomicity holds.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "state.json"
    >>> with atomic_writer(target) as out:
    ...     _ = out.write(b"{}")
    >>> target.read_bytes(), [p.name for p in target.parent.iterdir()]
    (b'{}', ['state.json'])
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("wb") as out:
            yield out
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` (see :func:`atomic_writer`)."""
    with atomic_writer(path, durable=durable) as out:
        out.write(data)
