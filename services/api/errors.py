"""One error body for every failure, whoever raised it.

Clients parse a single shape, whatever went wrong and wherever (our routes, FastAPI's request
validation, Starlette's routing, or a bug)::

    {"error": {"status": 422, "code": "invalid_events", "message": "...", "details": [...]}}

``code`` is a stable machine-readable word, ``message`` is for people, and ``details`` (a list,
possibly empty) says which field or which item of a batch is at fault. Routes raise
:class:`ApiError`; the handlers installed by :func:`install_error_handlers` render it and
translate everything else into the same shape.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

logger = logging.getLogger(__name__)

JSON = "application/json"


class ApiError(Exception):
    """An error a route answers on purpose: its status, code, message and details."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[Mapping[str, Any]] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = dict(headers or {})


def error_body(
    status: int, code: str, message: str, details: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """The ``{"error": {...}}`` object; also embedded by ``/readyz`` in its 503 answer."""
    return {"error": {"status": status, "code": code, "message": message, "details": details}}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    return Response(
        orjson.dumps(error_body(status, code, message, details)),
        status_code=status,
        media_type=JSON,
        headers=headers,
    )


def _status_code_word(status: int) -> str:
    """``404`` -> ``not_found``: Starlette's own errors carry no code, so derive one."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "http_error"


async def _on_api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _on_http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    message = exc.detail if isinstance(exc.detail, str) else _status_code_word(exc.status_code)
    return error_response(
        exc.status_code, _status_code_word(exc.status_code), message, headers=exc.headers
    )


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = [
        {
            "location": str(error["loc"][0]) if error.get("loc") else "request",
            "field": ".".join(str(part) for part in error.get("loc", ())[1:]) or None,
            "reason": str(error.get("msg", "invalid value")),
        }
        for error in exc.errors()
    ]
    fields = ", ".join(sorted({str(d["field"] or d["location"]) for d in details}))
    return error_response(422, "invalid_request", f"invalid request: {fields}", details)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not a dependency being down (those degrade or answer 503): log it whole, tell the
    # client nothing about our internals.
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal server error")


def install_error_handlers(app: FastAPI) -> None:
    """Render every error of ``app`` in the one shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
