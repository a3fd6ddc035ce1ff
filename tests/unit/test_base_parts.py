"""A refit in parts: gathered in the topic's order, whole only with every part, dropped when
its sender moves on or another refit's parts come."""

from __future__ import annotations

import pytest

from services.trainer.base_parts import BaseAssembly, split

DATA = bytes(range(256)) * 10


def pending_at(assembly: BaseAssembly) -> int | None:
    """The first offset of the incomplete base (a call: not narrowed between asserts)."""
    return assembly.first_offset


def test_the_parts_of_a_base_give_its_bytes_back() -> None:
    parts = split(DATA, "b1", part_bytes=1000)
    assert len(parts) == 3
    assembly = BaseAssembly()
    assert assembly.add(parts[0], 7, "base:w0") is None
    assert pending_at(assembly) == 7
    assert assembly.add(parts[1], 9, "base:w0") is None
    assert assembly.add(parts[2], 10, "base:w0") == DATA
    assert pending_at(assembly) is None


def test_a_small_base_is_one_part() -> None:
    (part,) = split(b"tiny", "b1", part_bytes=1000)
    assert BaseAssembly().add(part, 0, "base:w0") == b"tiny"


def test_a_part_of_another_base_drops_the_incomplete_one() -> None:
    first, second = split(DATA, "b1", 1000), split(DATA, "b2", 1000)
    assembly = BaseAssembly()
    assembly.add(first[0], 0, "base:w0")
    assert assembly.add(second[0], 1, "base:w1") is None
    assert assembly.dropped == 1
    assert pending_at(assembly) == 1
    assert assembly.add(first[1], 2, "base:w0") is None  # the dropped base does not come back
    assert assembly.dropped == 2


def test_a_base_whose_sender_moved_on_is_dropped() -> None:
    parts = split(DATA, "b1", 1000)
    assembly = BaseAssembly()
    assembly.add(parts[0], 0, "base:w0")
    assembly.sender_moved_on("base:w1")  # another worker's update: nothing to do with it
    assert pending_at(assembly) == 0
    assembly.sender_moved_on("base:w0")
    assert pending_at(assembly) is None
    assert assembly.dropped == 1


def test_parts_whose_first_was_not_read_are_ignored() -> None:
    parts = split(DATA, "b1", 1000)
    assembly = BaseAssembly()
    assert assembly.add(parts[1], 5, "base:w0") is None
    assert assembly.add(parts[2], 6, "base:w0") is None
    assert pending_at(assembly) is None


@pytest.mark.parametrize("cut", [3, 20, -5])
def test_an_unreadable_part_is_refused(cut: int) -> None:
    (part,) = split(b"some base", "b1", 1000)
    with pytest.raises(ValueError, match="part of a model base"):
        BaseAssembly().add(part[:cut], 0, "base:w0")
