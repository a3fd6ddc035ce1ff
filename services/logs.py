"""Logging of every service: plain lines for a terminal, or one JSON object per line.

``RECSYS_LOG_FORMAT=json`` (Kubernetes, log shippers) turns every record into one line such as::

    {"time": "2026-12-02T06:13:39.120Z", "level": "info", "logger": "services.trainer.app",
     "message": "restored checkpoint", "events_learned": 40000}

Fields passed with ``extra=`` become keys of the object, so an event of note carries its
figures as data, not only inside a sentence.

>>> import io
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> handler.setFormatter(JsonFormatter())
>>> record = logging.makeLogRecord({"msg": "hello %s", "args": ("you",), "levelname": "INFO",
...                                 "name": "demo", "events": 3})
>>> handler.emit(record)
>>> line = orjson.loads(stream.getvalue())
>>> line["message"], line["level"], line["events"]
('hello you', 'info', 3)
"""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any, Final

import orjson

from recsys_stream.settings import Settings

_STANDARD_ATTRIBUTES: Final = frozenset(
    logging.makeLogRecord({}).__dict__.keys() | {"message", "asctime", "taskName"}
)
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, extras."""

    def format(self, record: logging.LogRecord) -> str:
        moment = time.gmtime(record.created)
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", moment) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(
            (key, value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # Extras are whatever a caller logs (offsets keyed by partition number, say): a log
        # line must never fail to be written over the type of a key.
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def logging_config(settings: Settings) -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` for the settings' format and level (also what the
    Faust worker and uvicorn are given, so that their records look like ours)."""
    formatter: dict[str, Any] = (
        {"()": f"{__name__}.JsonFormatter"}
        if settings.log_format == "json"
        else {"format": TEXT_FORMAT}
    )
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {
            # uvicorn's loggers propagate to the root logger, so they use the same format.
            name: {"handlers": [], "propagate": True}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(settings: Settings) -> None:
    """Apply :func:`logging_config` to this process."""
    logging.config.dictConfig(logging_config(settings))
