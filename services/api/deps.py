"""The FastAPI dependencies of the routes: the per-app serving state, its settings and
publisher, and the API-key guard of the write routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from recsys_stream.serving import EventPublisher
from recsys_stream.settings import ApiSettings
from services.api.dashboard import page_writes_allowed
from services.api.errors import ApiError
from services.api.keys import RateLimiter
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
    description="A key in force (`RECSYS_API__API_KEY`, or one of `RECSYS_API__CREDENTIALS_PATH`); "
    "required to write.",
)


async def require_api_key(
    request: Request,
    serving: ServingDep,
    key: Annotated[str | None, Security(_api_key_scheme)],
) -> None:
    """Let a write through only with a key in force (and never when none is set), or from
    the dashboard's page in the embedded mode (:func:`page_writes_allowed`).

    The keys are ``RECSYS_API__API_KEY`` and those of ``RECSYS_API__CREDENTIALS_PATH``
    (:class:`~services.api.keys.KeyRing`: named, rotated without a restart, compared in
    constant time). The name of the key that matched is kept in ``request.state.api_key``
    for the rate limit; the key itself is never logged nor answered.
    """
    if page_writes_allowed(request):
        request.state.api_key = "page"
        return
    if not serving.keys.configured:
        raise ApiError(403, "writes_disabled", "writes are disabled: no API key is configured")
    if key is None:
        raise ApiError(
            401,
            "missing_api_key",
            f"the {API_KEY_HEADER} header is required",
            headers={"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'},
        )
    name = serving.keys.identify(key)
    if name is None:
        raise ApiError(403, "invalid_api_key", "the API key is not valid")
    request.state.api_key = name


async def limit_event_rate(request: Request, serving: ServingDep) -> None:
    """429 with ``Retry-After`` once the key's requests exceed ``events_rate_per_s`` (with
    bursts of ``events_burst``); runs after :func:`require_api_key`."""
    name = getattr(request.state, "api_key", None) or "anonymous"
    wait = serving.limiter.take(name)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"too many requests with this key; retry in {wait:.1f} s",
            headers={"Retry-After": RateLimiter.retry_after(wait)},
        )
