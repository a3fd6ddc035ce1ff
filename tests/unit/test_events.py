"""The rating event: validation, the wire format and its property-based guarantees."""

import json
import math
import tracemalloc
from collections.abc import Mapping

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from recsys_stream.events import (
    MAX_EVENT_BYTES,
    MAX_ID,
    RATING_MAX,
    RATING_MIN,
    TIMESTAMP_MAX,
    EventBatch,
    EventValidationError,
    RatingEvent,
    decode,
    encode,
    encode_rows,
)

valid_events = st.builds(
    RatingEvent,
    user_id=st.integers(0, MAX_ID),
    item_id=st.integers(0, MAX_ID),
    rating=st.floats(RATING_MIN, RATING_MAX) | st.integers(1, 5),
    timestamp=st.floats(0, TIMESTAMP_MAX) | st.integers(0, int(TIMESTAMP_MAX)),
    event_id=st.none() | st.text(max_size=40),
    source=st.none() | st.text(max_size=20),
)


@given(valid_events)
def test_encode_decode_round_trips(event: RatingEvent) -> None:
    assert decode(encode(event)) == event


@settings(max_examples=500)
@given(st.binary(max_size=2 * MAX_EVENT_BYTES))
def test_no_byte_string_makes_decode_raise_anything_but_validation_error(payload: bytes) -> None:
    try:
        decode(payload)
    except EventValidationError as exc:
        reason = exc.reason
    else:
        reason = "decoded"
    assert reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=500)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "user_id": json_values,
            "item_id": json_values,
            "rating": json_values,
            "timestamp": json_values,
            "event_id": json_values,
            "source": json_values,
        },
    )
)
def test_any_json_object_decodes_or_is_rejected_with_a_reason(fields: dict[str, object]) -> None:
    payload = json.dumps(fields).encode()  # stdlib: also writes NaN and huge integers
    try:
        event = decode(payload)
    except EventValidationError as exc:
        assert exc.reason, "a rejection always says why"  # noqa: PT017 - property over any input
    else:
        assert event.to_dict() == {k: v for k, v in fields.items() if v is not None}


def _payload(**overrides: object) -> bytes:
    fields: dict[str, object] = {"user_id": 1, "item_id": 2, "rating": 4.0, "timestamp": 10}
    fields.update(overrides)
    return orjson.dumps({k: v for k, v in fields.items() if v is not ...})


@pytest.mark.parametrize(
    ("payload", "reason_fragment"),
    [
        (_payload(user_id=...), "missing required field(s) ['user_id']"),
        (_payload(user_id="1"), "user_id: must be an integer, got str"),
        (_payload(user_id=1.0), "user_id: must be an integer, got float"),
        (_payload(user_id=True), "user_id: must be an integer, got bool"),
        (_payload(item_id=-3), "item_id: must be between 0 and"),
        (_payload(item_id=MAX_ID + 1), "item_id: must be between 0 and"),
        (_payload(rating=0.0), "rating: must be between 0.5 and 5.0"),
        (_payload(rating=5.5), "rating: must be between 0.5 and 5.0"),
        (_payload(rating=None), "rating: must be a number, got NoneType"),
        (_payload(timestamp=-1), "timestamp: must be between"),
        (_payload(timestamp=1e12), "timestamp: must be between"),
        (_payload(event_id=5), "event_id: must be a string"),
        (_payload(source="x" * 200), "source: must be at most 128 characters"),
        (_payload(colour="red"), "unknown field(s) ['colour']"),
        (b'{"user_id": 1, "item_id": 2, "rating": NaN, "timestamp": 1}', "not valid JSON"),
        (b"[1, 2, 3]", "expected a JSON object, got list"),
        (b"", "not valid JSON"),
        (None, "empty message"),
        (b" " * (MAX_EVENT_BYTES + 1), "exceeds the 1024-byte limit"),
    ],
)
def test_bad_messages_are_rejected_with_a_clear_reason(
    payload: bytes | None, reason_fragment: str
) -> None:
    with pytest.raises(EventValidationError) as excinfo:
        decode(payload)
    assert reason_fragment in str(excinfo.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_ratings_are_rejected_at_construction(bad: float) -> None:
    with pytest.raises(EventValidationError, match="rating: must be finite"):
        RatingEvent(user_id=1, item_id=2, rating=bad, timestamp=0)


def test_optional_fields_are_omitted_from_the_wire_when_unset() -> None:
    assert orjson.loads(encode(RatingEvent(1, 2, 3.5, 4))) == {
        "user_id": 1,
        "item_id": 2,
        "rating": 3.5,
        "timestamp": 4,
    }


def test_event_batch_keeps_columns_in_stream_order() -> None:
    events = [RatingEvent(3, 30, 1.0, 5), RatingEvent(1, 10, 5.0, 6), RatingEvent(3, 20, 2.5, 6)]
    batch = EventBatch.from_events(events)
    assert batch.user_ids.dtype == np.int64
    assert batch.ratings.dtype == np.float32
    assert batch.user_ids.tolist() == [3, 1, 3]
    assert list(batch.events()) == events
    assert batch.slice(1, 3).item_ids.tolist() == [10, 20]


def test_event_batch_rejects_ragged_columns() -> None:
    with pytest.raises(ValueError, match="equal lengths"):
        EventBatch.from_arrays([1, 2], [1], [4.0, 4.0], [0, 0])


def _row_by_row(
    columns: list[np.ndarray], event_ids: list[str | None], source: str | None
) -> list[bytes | str]:
    """The reference: an event built and encoded per row, or the reason it was refused."""
    encoded: list[bytes | str] = []
    for user, item, rating, timestamp, event_id in zip(
        *(column.tolist() for column in columns), event_ids, strict=True
    ):
        try:
            encoded.append(encode(RatingEvent(user, item, rating, timestamp, event_id, source)))
        except EventValidationError as exc:
            encoded.append(str(exc))
    return encoded


def _as_compared(encoded: list[bytes | EventValidationError]) -> list[bytes | str]:
    return [value if isinstance(value, bytes) else str(value) for value in encoded]


_ID_DTYPES = {
    "int64": st.integers(-2, MAX_ID + 2),
    "int32": st.integers(-2, MAX_ID),
    "uint32": st.integers(0, MAX_ID + 2),
    "float64": st.floats(-2, MAX_ID + 2) | st.just(math.nan),
    "bool": st.booleans(),
}
_NUMBER_DTYPES = {
    "float64": st.floats(-1, 6) | st.floats(allow_nan=True, allow_infinity=True),
    "float32": st.floats(-1, 6, width=32) | st.floats(width=32),
    "int64": st.integers(-1, 6) | st.integers(-1, 2 * int(TIMESTAMP_MAX)),
    "bool": st.booleans(),
}


@st.composite
def _columns(draw: st.DrawFn) -> list[np.ndarray]:
    """Four columns of one length, each of a dtype a data frame may hold, valid or not."""
    n = draw(st.integers(0, 20))

    def column(dtypes: Mapping[str, st.SearchStrategy[object]]) -> np.ndarray:
        dtype = draw(st.sampled_from(sorted(dtypes)))
        return draw(hnp.arrays(dtype, n, elements=dtypes[dtype]))

    columns = [column(_ID_DTYPES), column(_ID_DTYPES), column(_NUMBER_DTYPES)]
    columns.append(column(_NUMBER_DTYPES))
    if draw(st.booleans()):  # a column of Python objects, as a frame with gaps holds
        columns[draw(st.integers(0, 3))] = np.array(
            draw(st.lists(st.none() | st.integers(0, 5) | st.floats(0, 5), min_size=n, max_size=n)),
            dtype=object,
        )
    return columns


@given(
    _columns(),
    st.lists(st.none() | st.text(max_size=3) | st.just("x" * 129), min_size=20, max_size=20),
    st.none() | st.just("replay") | st.just("y" * 129),
)
@settings(max_examples=300, derandomize=True, database=None, deadline=None)
def test_encoding_columns_gives_what_each_row_encoded_alone_gives(
    columns: list[np.ndarray], event_ids: list[str | None], source: str | None
) -> None:
    """Whatever the values and the columns' dtypes, every row is encoded as its event alone
    would be, or refused with the same reason."""
    ids_of_rows = event_ids[: len(columns[0])]
    encoded = encode_rows(*columns, event_ids=ids_of_rows, source=source)
    assert _as_compared(encoded) == _row_by_row(columns, ids_of_rows, source)


def test_a_column_of_float_ids_is_refused_row_by_row_with_the_reason() -> None:
    encoded = encode_rows(np.array([1.0, 2.0]), [10, 20], [4.0, 3.0], [100, 101])
    assert [str(value) for value in encoded] == ["user_id: must be an integer, got float"] * 2


def test_encoding_columns_without_ids_or_source_omits_them() -> None:
    (encoded,) = encode_rows([1], [2], [3.5], [4])
    assert encoded == encode(RatingEvent(1, 2, 3.5, 4))


def test_encoded_events_hold_only_their_bytes() -> None:
    """A log keeps every encoded event: each must not keep the encoder's working buffer
    (orjson's is ~4 KB, 60 times a 70-byte event)."""
    event = RatingEvent(196, 242, 3.0, 881250949, event_id="ml-100k:0", source="replay")
    tracemalloc.start()
    try:
        kept: list[object] = [encode(event) for _ in range(1_000)]
        kept += encode_rows(*[[value] * 1_000 for value in (1, 2, 3.0, 4)])
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(kept) == 2_000
    assert held / len(kept) < 2 * len(encode(event)) + 100
