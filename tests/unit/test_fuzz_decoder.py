"""A structure-aware fuzz of the event decoder and the envelope format: valid envelopes and
events, then mutated (fields dropped, retyped, out of range, extra, duplicated keys, bytes
flipped, truncated, nested). Whatever the bytes, decoding never raises, every event is either
valid or an :class:`Invalid` with a code and a reason, and a valid event encodes back to an
equal one.

The budget is ``RECSYS_FUZZ_EXAMPLES`` examples per property (200 in ``make test``;
``make chaos`` runs 10,000). Fixed seeds: a failure reproduces.
"""

from __future__ import annotations

import os
import typing
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_stream.events import (
    ErrorCode,
    EventBatch,
    RatingEvent,
    decode_columns,
    decode_message,
    encode,
    pack,
)
from recsys_stream.events.envelope import MAX_ENVELOPE_BYTES

EXAMPLES = int(os.environ.get("RECSYS_FUZZ_EXAMPLES", "200"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CODES = set(typing.get_args(ErrorCode))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
valid_fields = st.fixed_dictionaries(
    {
        "user_id": st.integers(0, 2**31 - 1),
        "item_id": st.integers(0, 2**31 - 1),
        "rating": st.sampled_from([0.5, 1.0, 2.5, 3.0, 4.5, 5.0]),
        "timestamp": st.floats(0, 4_102_444_800, allow_nan=False),
    },
    optional={"event_id": st.text(max_size=128), "source": st.text(max_size=128)},
)


@st.composite
def mutated_event(draw: st.DrawFn) -> Any:
    fields: dict[str, Any] = dict(draw(valid_fields))
    for _ in range(draw(st.integers(0, 3))):
        action = draw(st.sampled_from(["drop", "retype", "extra", "huge", "not_object"]))
        name = draw(st.sampled_from(sorted(fields) or ["user_id"]))
        if action == "drop":
            fields.pop(name, None)
        elif action == "retype":
            fields[name] = draw(json_values)
        elif action == "extra":
            fields[draw(st.text(max_size=12))] = draw(json_values)
        elif action == "huge":
            fields[name] = "x" * draw(st.integers(100, 3_000))
        else:
            return draw(json_values)
    return fields


@st.composite
def message(draw: st.DrawFn) -> bytes:
    """Bytes of a message: an event or an envelope, valid or mutated, maybe damaged."""
    if draw(st.booleans()):
        payload: Any = draw(mutated_event())
    else:
        envelope: dict[str, Any] = {
            "version": draw(st.sampled_from([1, 1, 1, 0, 2, "1", None])),
            "events": draw(st.lists(mutated_event(), max_size=20)),
        }
        if draw(st.booleans()):
            envelope[draw(st.text(max_size=8))] = draw(json_values)
        payload = envelope
    try:
        raw = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        raw = repr(payload).encode()
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "prefix", "duplicate"]))
    if damage == "truncate" and raw:
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    elif damage == "flip" and raw:
        at = draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
    elif damage == "prefix":
        raw = draw(st.binary(max_size=8)) + raw
    elif damage == "duplicate" and raw.startswith(b"{") and len(raw) > 2:
        raw = b'{"user_id": 1, ' + raw[1:]
    return raw


@FUZZ
@given(message())
def test_the_decoder_never_raises_and_explains_every_invalid_event(raw: bytes) -> None:
    decoded = decode_message(raw)
    assert decoded.events or decoded.invalid
    for invalid in decoded.invalid:
        assert invalid.error.code in CODES
        assert invalid.error.reason
    for event in decoded.events:
        assert isinstance(event, RatingEvent)
        again = decode_message(encode(event))
        assert again.events == [event]


@FUZZ
@given(st.lists(valid_fields, min_size=1, max_size=60), st.integers(1, 50), st.integers(200, 8_000))
def test_packed_envelopes_decode_to_exactly_the_events_packed(
    fields: list[dict[str, Any]], max_events: int, max_bytes: int
) -> None:
    events = [RatingEvent.from_mapping(f) for f in fields]
    unpacked: list[RatingEvent] = []
    for envelope, count in pack(events, max_events=max_events, max_bytes=max_bytes):
        assert len(envelope) <= max(max_bytes, max(len(encode(e)) for e in events) + 64)
        assert len(envelope) <= MAX_ENVELOPE_BYTES
        decoded = decode_message(envelope)
        assert not decoded.invalid
        assert len(decoded.events) == count
        unpacked.extend(decoded.events)
    assert unpacked == events


def _assert_same(columns: EventBatch, events: list[RatingEvent]) -> None:
    expected = EventBatch.from_events(events)
    for name in ("user_ids", "item_ids", "ratings", "timestamps"):
        actual, wanted = getattr(columns, name), getattr(expected, name)
        assert actual.dtype == wanted.dtype, name
        assert np.array_equal(actual, wanted), name


@FUZZ
@given(message())
def test_the_columns_decoder_accepts_and_refuses_exactly_what_the_event_decoder_does(
    raw: bytes,
) -> None:
    batch, invalid = decode_columns(raw)
    decoded = decode_message(raw)
    _assert_same(batch, decoded.events)
    assert [(bad.index, bad.error.code, str(bad.error)) for bad in invalid] == [
        (bad.index, bad.error.code, str(bad.error)) for bad in decoded.invalid
    ]


@FUZZ
@given(
    st.lists(
        valid_fields
        | st.fixed_dictionaries(
            {
                "user_id": st.integers(0, 2**31 - 1),
                "item_id": st.integers(0, 2**31 - 1),
                "rating": st.integers(1, 5),
                "timestamp": st.integers(0, 4_102_444_800),
                "event_id": st.none(),
            }
        ),
        min_size=1,
        max_size=60,
    )
)
def test_an_envelope_of_valid_events_decodes_to_the_same_columns(
    fields: list[dict[str, Any]],
) -> None:
    raw = orjson.dumps({"version": 1, "events": fields})
    batch, invalid = decode_columns(raw)
    assert not invalid
    _assert_same(batch, decode_message(raw).events)
