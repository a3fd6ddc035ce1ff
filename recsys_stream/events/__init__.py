"""Rating events: the schema every component shares, its wire format, micro-batches of it, and
the embedded event log that stands in for Kafka in one process.

>>> from recsys_stream.events import RatingEvent, decode, encode
>>> decode(encode(RatingEvent(196, 242, 3.0, 881250949))).item_id
242
"""

from recsys_stream.events.batch import EventBatch
from recsys_stream.events.codec import decode, encode, encode_rows
from recsys_stream.events.envelope import (
    ENVELOPE_OVERHEAD,
    ENVELOPE_VERSION,
    MAX_ENVELOPE_BYTES,
    MAX_ENVELOPE_EVENTS,
    Decoded,
    Invalid,
    check_bounds,
    decode_columns,
    decode_message,
    encode_envelope,
    join_envelope,
    json_type,
    pack,
)
from recsys_stream.events.log import InMemoryEventLog, LogConsumer, LogRecord, partition_for
from recsys_stream.events.rating import (
    MAX_EVENT_BYTES,
    MAX_ID,
    MAX_TEXT_LENGTH,
    OPTIONAL_FIELDS,
    RATING_MAX,
    RATING_MIN,
    REQUIRED_FIELDS,
    TIMESTAMP_MAX,
    ErrorCode,
    EventValidationError,
    RatingEvent,
)

__all__ = [
    "ENVELOPE_OVERHEAD",
    "ENVELOPE_VERSION",
    "MAX_ENVELOPE_BYTES",
    "MAX_ENVELOPE_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_ID",
    "MAX_TEXT_LENGTH",
    "OPTIONAL_FIELDS",
    "RATING_MAX",
    "RATING_MIN",
    "REQUIRED_FIELDS",
    "TIMESTAMP_MAX",
    "Decoded",
    "ErrorCode",
    "EventBatch",
    "EventValidationError",
    "InMemoryEventLog",
    "Invalid",
    "LogConsumer",
    "LogRecord",
    "RatingEvent",
    "check_bounds",
    "decode",
    "decode_columns",
    "decode_message",
    "encode",
    "encode_envelope",
    "encode_rows",
    "join_envelope",
    "json_type",
    "pack",
    "partition_for",
]
