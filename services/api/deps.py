"""The FastAPI dependencies of the routes: the per-app serving state, its settings and
publisher, and the API-key guard of the write routes."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from recsys_stream.serving import EventPublisher
from recsys_stream.settings import ApiSettings
from services.api.dashboard import page_writes_allowed
from services.api.errors import ApiError
from services.api.state import Serving

# Dependencies are ``async def`` although they do not await: FastAPI runs a plain ``def``
# dependency in a worker thread, which would cost more than all the rest of a cached request.


async def get_serving(request: Request) -> Serving:
    serving: Serving = request.app.state.serving
    return serving


ServingDep = Annotated[Serving, Depends(get_serving)]


async def get_settings(serving: ServingDep) -> ApiSettings:
    return serving.settings


async def get_publisher(serving: ServingDep) -> EventPublisher:
    return serving.publisher


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
PublisherDep = Annotated[EventPublisher, Depends(get_publisher)]

API_KEY_HEADER = "X-API-Key"
_api_key_scheme = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The key configured as `RECSYS_API__API_KEY`; required to write.",
)


async def require_api_key(
    request: Request,
    settings: SettingsDep,
    key: Annotated[str | None, Security(_api_key_scheme)],
) -> None:
    """Let a write through only with the configured key (and never when none is set), or
    from the dashboard's page in the embedded mode (:func:`page_writes_allowed`).

    Compared in constant time, as bytes: a header may hold any Latin-1 text, which
    ``compare_digest`` refuses as ``str``.
    """
    if page_writes_allowed(request):
        return
    expected = settings.api_key.get_secret_value() if settings.api_key is not None else ""
    if not expected:
        raise ApiError(403, "writes_disabled", "writes are disabled: no API key is configured")
    if key is None:
        raise ApiError(
            401,
            "missing_api_key",
            f"the {API_KEY_HEADER} header is required",
            headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'},
        )
    if not secrets.compare_digest(key.encode(), expected.encode()):
        raise ApiError(403, "invalid_api_key", "the API key is not valid")
