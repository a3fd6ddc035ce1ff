"""Operations: liveness, readiness and the Prometheus exposition."""

import logging

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from services.api.deps import ServingDep
from services.api.errors import error_body
from services.api.schemas import Health, Readiness, json_response
from services.api.state import Serving

logger = logging.getLogger(__name__)

_HEALTHY = b'{"status":"ok"}'


def router() -> APIRouter:
    routes = APIRouter(tags=["operations"])

    @routes.get("/healthz", response_model=Health, summary="Liveness")
    async def healthz() -> Response:
        """Answers while the process serves HTTP; checks no dependency (restarting the API
        would not bring Redis or Kafka back)."""
        return Response(_HEALTHY, media_type="application/json")

    @routes.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A check failed."}},
        summary="Readiness",
    )
    async def readyz(serving: ServingDep) -> Response:
        """Ready when the cache and the publisher answer a ping and a model snapshot is
        loaded; otherwise 503 naming the failed checks."""
        checks = {
            "cache": _cache_answers(serving),
            "publisher": await _publisher_answers(serving),
            "snapshot": await serving.snapshots.get() is not None,
        }
        if all(checks.values()):
            return json_response({"status": "ready", "checks": checks})
        failed = ", ".join(name for name, ok in checks.items() if not ok)
        return json_response(
            {
                "status": "unready",
                "checks": checks,
                **error_body(503, "not_ready", f"failed checks: {failed}"),
            },
            503,
        )

    @routes.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics."}},
        summary="Prometheus metrics",
    )
    async def prometheus_metrics(serving: ServingDep) -> Response:
        """Request latency and counts by route, recommendation sources and cache hit ratio,
        model version and age, and the trainer's consumer lag when it reports one."""
        return Response(serving.telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)

    return routes


# A probe reports a failure, whatever it is, rather than raising it: hence the broad excepts.


def _cache_answers(serving: Serving) -> bool:
    try:
        return bool(serving.cache.ping())
    except Exception as exc:
        logger.warning("readiness: the cache does not answer: %s", exc)
        return False


async def _publisher_answers(serving: Serving) -> bool:
    try:
        return bool(await serving.publisher.ping())
    except Exception as exc:
        logger.warning("readiness: the publisher does not answer: %s", exc)
        return False
