"""Event ingestion: rating events in, handed to the event log (Kafka) all or nothing.

The body is read and validated here rather than by FastAPI's body parsing, for two reasons:
the size limit must hold while reading (a declared Content-Length can lie or be absent), and
every event goes through the one validator the consumers use
(:meth:`RatingEvent.from_mapping`), so that an invalid batch is refused with a reason per
item, in the same words a dead letter would carry. The OpenAPI schema still describes the
body, built from :class:`~services.api.schemas.EventIn`.
"""

import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from recsys_stream.events import EventValidationError, RatingEvent
from recsys_stream.serving import PublishError, PublishUnconfirmedError
from recsys_stream.settings import ApiSettings
from services.api.deps import PublisherDep, limit_event_rate, require_api_key
from services.api.errors import ApiError
from services.api.schemas import Accepted, EventIn, error_responses, json_response, linked

DEFAULT_SOURCE = "api"


def router(settings: ApiSettings) -> APIRouter:
    """``POST /events``, with the body bounded by ``settings``."""
    routes = APIRouter(tags=["events"])

    @routes.post(
        "/events",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(400, 401, 403, 413, 422, 429, 503, 504)
        | linked(
            202,
            RecommendationsOfTheUser=(
                "recommend_for_user",
                {"user_id": "$request.body#/user_id"},
            ),
            HistoryOfTheUser=("user_history", {"user_id": "$request.body#/user_id"}),
        ),
        dependencies=[Depends(require_api_key), Depends(limit_event_rate)],
        openapi_extra={"requestBody": _request_body(settings.max_batch_events)},
        summary="Send rating events",
    )
    async def post_events(request: Request, publisher: PublisherDep) -> Response:
        """Publish one event, or a batch as ``{"events": [...]}``, to the event stream.

        Every event is validated first; if any is invalid, none is sent and the answer lists
        each fault by index. Otherwise all are published together: 202 with their ids once
        the broker confirmed every one; 503 when none was published (the broker did not
        answer, or the send failed before any record left: those are cancelled, never
        delivered later); 504 when the broker failed to confirm records it had been sent:
        the others are cancelled, those may be written, and the details list the event ids.
        Missing fields are filled in: ``timestamp`` with the server's time, ``source`` with
        ``"api"``, ``event_id`` with a UUID4.
        """
        body = await _read_body(request, settings.max_body_bytes)
        objects = _event_objects(_parse_json(body), settings.max_batch_events)
        events = _validated(objects)
        try:
            await publisher.publish(events)
        except PublishUnconfirmedError as exc:
            raise ApiError(
                504,
                "publish_unconfirmed",
                f"the events were not all confirmed: {exc}",
                [{"event_id": event.event_id} for event in events],
            ) from exc
        except PublishError as exc:
            raise ApiError(
                503, "publish_failed", f"the events could not be published, none was: {exc}"
            ) from exc
        return json_response(
            {"accepted": len(events), "event_ids": [event.event_id for event in events]}, 202
        )

    return routes


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing it as soon as it is known to exceed ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body exceeds the {limit}-byte limit")


def _parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


def _event_objects(payload: Any, max_events: int) -> Sequence[Any]:
    """The event objects of a single-event or ``{"events": [...]}`` body."""
    if not isinstance(payload, dict):
        raise _invalid_body(f"expected a JSON object, got {_json_type(payload)}")
    if "events" not in payload:
        return [payload]
    if payload.keys() != {"events"}:
        extra = sorted(payload.keys() - {"events"})
        raise _invalid_body(f"a batch has only the field 'events'; unknown field(s) {extra}")
    events = payload["events"]
    if not isinstance(events, list):
        raise _invalid_body(f"'events' must be a list, got {_json_type(events)}")
    if not 1 <= len(events) <= max_events:
        raise _invalid_body(f"'events' must hold 1 to {max_events} events, got {len(events)}")
    return events


def _invalid_body(message: str) -> ApiError:
    return ApiError(422, "invalid_body", message)


def _validated(objects: Sequence[Any]) -> list[RatingEvent]:
    """Every object as an event with defaults filled in, or 422 naming each invalid one."""
    now = time.time()
    events: list[RatingEvent] = []
    problems: list[dict[str, object]] = []
    for index, fields in enumerate(objects):
        if not isinstance(fields, dict):
            problems.append(
                {
                    "index": index,
                    "field": None,
                    "reason": f"expected a JSON object, got {_json_type(fields)}",
                }
            )
            continue
        try:
            events.append(RatingEvent.from_mapping(_with_defaults(fields, now)))
        except EventValidationError as exc:
            problems.append({"index": index, "field": exc.field, "reason": exc.reason})
    if problems:
        raise ApiError(
            422,
            "invalid_events",
            f"{len(problems)} of {len(objects)} events are invalid; none was accepted",
            problems,
        )
    return events


def _with_defaults(fields: Mapping[str, Any], now: float) -> dict[str, Any]:
    """``fields`` with the defaults of the optional fields left out (or sent as null)."""
    filled = dict(fields)
    if filled.get("timestamp") is None:
        filled["timestamp"] = now
    if filled.get("source") is None:
        filled["source"] = DEFAULT_SOURCE
    if filled.get("event_id") is None:
        filled["event_id"] = str(uuid.uuid4())
    return filled


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _request_body(max_events: int) -> dict[str, Any]:
    event = EventIn.model_json_schema()
    batch = {
        "title": "EventBatch",
        "type": "object",
        "properties": {
            "events": {"type": "array", "items": event, "minItems": 1, "maxItems": max_events}
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    return {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"anyOf": [event, batch]},
                "examples": {
                    "single": {
                        "summary": "One event",
                        "value": {"user_id": 196, "item_id": 242, "rating": 3.0},
                    },
                    "batch": {
                        "summary": "A batch (all or nothing)",
                        "value": {
                            "events": [
                                {
                                    "user_id": 196,
                                    "item_id": 242,
                                    "rating": 3.0,
                                    "timestamp": 881250949,
                                    "event_id": "client-1:0",
                                },
                                {"user_id": 186, "item_id": 302, "rating": 4.5},
                            ]
                        },
                    },
                },
            }
        },
    }
