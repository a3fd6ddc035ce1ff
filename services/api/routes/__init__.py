"""The API's routes, one module per group; routers are built per app from its settings (the
bounds of ``k`` and of a batch are part of each route's schema)."""

from fastapi import APIRouter

from recsys_stream.settings import ApiSettings
from services.api.routes import dashboard, events, explore, metrics, ops, recommendations


def build_routers(settings: ApiSettings) -> list[APIRouter]:
    """Every route of the API, by group, the hot recommendation routes first.

    A list rather than one router of routers: each level of nesting adds its own matching
    pass to every request.
    """
    return [
        recommendations.router(settings),
        metrics.router(),
        events.router(settings),
        ops.router(),
        explore.router(),
        dashboard.router(),
    ]
