"""The JSON log lines: every record becomes one object, whatever its extras hold."""

from __future__ import annotations

import logging
import sys

import orjson

from services.logs import JsonFormatter


def _line(**extra: object) -> dict[str, object]:
    record = logging.makeLogRecord(
        {"msg": "committed %s", "args": ("offsets",), "levelname": "INFO", "name": "t", **extra}
    )
    parsed: dict[str, object] = orjson.loads(JsonFormatter().format(record))
    return parsed


def test_extras_keyed_by_numbers_are_written_with_string_keys() -> None:
    line = _line(offsets={0: 3, 5: 4})
    assert line["offsets"] == {"0": 3, "5": 4}
    assert line["message"] == "committed offsets"


class _Partition:
    def __str__(self) -> str:
        return "ratings/3"


def test_extras_json_cannot_hold_are_written_as_their_text() -> None:
    assert _line(where=_Partition())["where"] == "ratings/3"


def test_an_exception_is_written_with_its_traceback() -> None:
    try:
        raise ValueError("bad offset")
    except ValueError:
        record = logging.makeLogRecord({"msg": "failed", "exc_info": sys.exc_info()})
    line = orjson.loads(JsonFormatter().format(record))
    assert "ValueError: bad offset" in line["exception"]
