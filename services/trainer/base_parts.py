"""A group's refit on the updates topic, in parts that each fit in a Kafka message.

A :class:`~recsys_stream.learner.ModelBase` holds every user's and item's rows: at MovieLens 25M
scale (~225k rows at dimension 64) about 115 MB, more than a broker takes in one message. The
leader sends it as consecutive **parts** (:func:`split`), each a message keyed by the base;
every worker gathers them (:class:`BaseAssembly`) and adopts the base where its **last** part
lies in the topic: one place in one order for every worker, as for a base in one message.
Updates between the parts are applied as they come (the model they were learned in is still
everyone's).

A base whose parts stop coming (its sender died, or gave up after a refused part) is dropped
when the next message of that sender, or a part of another base, arrives. While a base is
incomplete a checkpoint records the offset of its first part (:attr:`BaseAssembly.first_offset`),
so a worker restarted from it reads every part again; the updates it then reads twice are
applied once (each carries its sender and sequence).

>>> parts = split(b"0123456789", "b1", part_bytes=4)
>>> len(parts)
3
>>> assembly = BaseAssembly()
>>> [assembly.add(data, offset, "w0") for offset, data in enumerate(parts)]
[None, None, b'0123456789']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Final

import orjson

__all__ = ["BaseAssembly", "split"]

log = logging.getLogger(__name__)

_MAGIC: Final = b"RSPART\x00\x01"


def split(data: bytes, base_id: str, part_bytes: int) -> list[bytes]:
    """``data`` (a base's bytes) as parts of at most ``part_bytes`` of it each."""
    count = max(1, -(-len(data) // part_bytes))
    parts = []
    for index in range(count):
        chunk = data[index * part_bytes : (index + 1) * part_bytes]
        header = orjson.dumps({"id": base_id, "index": index, "count": count, "size": len(chunk)})
        parts.append(b"".join([_MAGIC, len(header).to_bytes(4, "little"), header, chunk]))
    return parts


@dataclass
class _Pending:
    base_id: str
    sender: str
    first_offset: int
    parts: list[bytes | None] = field(default_factory=list)


class BaseAssembly:
    """Gathers the parts of one base at a time, in the topic's order."""

    def __init__(self) -> None:
        self._pending: _Pending | None = None
        self.dropped = 0
        """Bases dropped incomplete."""

    @property
    def first_offset(self) -> int | None:
        """The offset of the first part of an incomplete base (None: none is)."""
        return None if self._pending is None else self._pending.first_offset

    def add(self, data: bytes, offset: int, sender: str) -> bytes | None:
        """Take one part (read at ``offset``, sent by ``sender``); the whole base's bytes
        once its last part came, else None. ``ValueError`` for bytes that are not a part."""
        if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
            raise ValueError("not a part of a model base")
        at = len(_MAGIC) + 4
        length = int.from_bytes(data[len(_MAGIC) : at], "little")
        try:
            header = orjson.loads(data[at : at + length])
            base_id, index, count = str(header["id"]), int(header["index"]), int(header["count"])
            size = int(header["size"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"an unreadable part of a model base: {exc}") from exc
        chunk = data[at + length :]
        if len(chunk) != size:
            raise ValueError(f"an unreadable part of a model base: {len(chunk)} of {size} bytes")
        if not 0 <= index < count:
            raise ValueError(f"an unreadable part of a model base: part {index} of {count}")
        pending = self._pending
        if pending is not None and pending.base_id != base_id:
            self._drop("a part of another base came")
            pending = None
        if pending is None:
            if index != 0:
                return None  # its first part was before where this worker started reading
            pending = self._pending = _Pending(base_id, sender, offset, [None] * count)
        pending.parts[index] = chunk
        if any(part is None for part in pending.parts):
            return None
        self._pending = None
        return b"".join(part for part in pending.parts if part is not None)

    def sender_moved_on(self, sender: str) -> None:
        """A message of ``sender`` that is not a part came: a base of its that is still
        incomplete will not be completed (parts are sent back to back)."""
        if self._pending is not None and self._pending.sender == sender:
            self._drop("its sender sent something else")

    def _drop(self, why: str) -> None:
        assert self._pending is not None
        log.warning(
            "dropped the incomplete model base %s (%s): the group keeps its model",
            self._pending.base_id,
            why,
        )
        self._pending = None
        self.dropped += 1
