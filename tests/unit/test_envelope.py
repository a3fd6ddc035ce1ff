"""Envelopes: many events in one message, packed within bounds, decoded event by event."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recsys_stream.events import (
    MAX_ENVELOPE_BYTES,
    RatingEvent,
    decode_message,
    encode,
    encode_envelope,
    pack,
)
from recsys_stream.serving import InMemorySink
from recsys_stream.settings import LearnerConfig, ModelConfig, RetrainConfig, StreamConfig
from recsys_stream.stream import StreamProcessor

EVENTS = [RatingEvent(u, 100 + u, 4.0, 1_000 + u, event_id=f"e:{u}") for u in range(7)]


def test_an_envelope_round_trips_in_order() -> None:
    decoded = decode_message(encode_envelope(EVENTS))
    assert decoded.events == EVENTS
    assert decoded.invalid == []


def test_a_single_event_is_still_a_message() -> None:
    assert decode_message(encode(EVENTS[0])).events == [EVENTS[0]]


def test_each_invalid_event_is_reported_with_its_index_and_the_rest_is_kept() -> None:
    elements: list[object] = [e.to_dict() for e in EVENTS[:3]]
    elements.insert(1, {"user_id": 1, "item_id": 2, "rating": 9, "timestamp": 0})
    elements.insert(3, [1, 2, 3])
    decoded = decode_message(orjson.dumps({"version": 1, "events": elements}))
    assert decoded.events == EVENTS[:3]
    assert [(bad.index, bad.error.code) for bad in decoded.invalid] == [
        (1, "invalid_field"),
        (3, "not_an_object"),
    ]
    assert orjson.loads(decoded.invalid[0].payload or b"")["rating"] == 9
    assert "rating: must be between" in str(decoded.invalid[0].error)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"version": 1, "events": [', "invalid_json"),
        (b'{"version": 2, "events": [{}]}', "invalid_envelope"),
        (b'{"version": 1, "events": {}}', "invalid_envelope"),
        (b'{"version": 1, "events": []}', "invalid_envelope"),
        (b'{"version": 1, "events": [], "extra": 1}', "invalid_envelope"),
        (b'{"events": [{"user_id": 1}]}', "invalid_envelope"),
        (b"[1, 2]", "not_an_object"),
        (None, "empty"),
    ],
)
def test_a_malformed_message_goes_whole(payload: bytes | None, code: str) -> None:
    decoded = decode_message(payload)
    assert decoded.events == []
    [bad] = decoded.invalid
    assert (bad.index, bad.error.code, bad.payload) == (None, code, payload)


def test_an_envelope_over_the_size_limit_goes_whole() -> None:
    padding = "x" * 100
    element = {**EVENTS[0].to_dict(), "source": padding}
    payload = orjson.dumps({"version": 1, "events": [element] * (MAX_ENVELOPE_BYTES // 150)})
    assert len(payload) > MAX_ENVELOPE_BYTES
    [bad] = decode_message(payload).invalid
    assert bad.error.code == "too_large"


@pytest.mark.parametrize(("max_events", "max_bytes"), [(1, 10_000), (3, 10_000), (100, 300)])
def test_packing_keeps_order_and_both_bounds(max_events: int, max_bytes: int) -> None:
    envelopes = list(pack(EVENTS, max_events=max_events, max_bytes=max_bytes))
    unpacked = [event for payload, _ in envelopes for event in decode_message(payload).events]
    assert unpacked == EVENTS
    for payload, count in envelopes:
        assert count <= max_events
        assert len(payload) <= max_bytes or count == 1
        assert len(decode_message(payload).events) == count


def test_packing_refuses_bounds_beyond_the_format() -> None:
    with pytest.raises(ValueError, match="bounds"):
        list(pack(EVENTS, max_events=0, max_bytes=1_000))
    with pytest.raises(ValueError, match="bounds"):
        list(pack(EVENTS, max_events=10, max_bytes=MAX_ENVELOPE_BYTES + 1))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.binary(max_size=2_000) | st.builds(lambda s: s.encode(), st.text(max_size=500)))
def test_decoding_never_raises_whatever_the_bytes(payload: bytes) -> None:
    decoded = decode_message(payload)
    assert decoded.events or decoded.invalid


def test_the_processor_learns_the_valid_events_of_an_envelope_and_dead_letters_the_rest() -> None:
    sink = InMemorySink()
    processor = StreamProcessor.create(
        LearnerConfig(
            model=ModelConfig(dim=8, context_length=4, mlp_hidden=8, sampled_negatives=16),
            retrain=RetrainConfig(every_events=None),
            device="cpu",
        ),
        StreamConfig(baselines=False),
        sink,
    )
    elements = [e.to_dict() for e in EVENTS]
    elements[2] = {"user_id": -1}
    result = processor.process_records(
        [orjson.dumps({"version": 1, "events": elements}), encode(EVENTS[0]), b"{"],
        ["t/0@0", "t/0@1", "t/0@2"],
    )
    assert result.learned == 7
    assert result.valid_per_message == [6, 1, 0]
    assert [(d.source, d.index, d.code) for d in result.dead_letters] == [
        ("t/0@0", 2, "missing_field"),
        ("t/0@2", None, "invalid_json"),
    ]
