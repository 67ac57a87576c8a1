"""`/readyz`: readiness for load balancers and Kubernetes, beside the liveness of `/healthz`.

Open to anonymous callers as `/healthz` is (a probe carries no API key). The body names each
check and, for a failed one, its reason; it holds no buyer data and no secret.
"""

from collections.abc import Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from service.readiness import Check, run_checks


def readiness_router(checks: Mapping[str, Check]) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get(
        "/readyz",
        summary="Readiness: the store, Temporal and the hand-off answer",
        responses={503: {"description": "A check failed; the body names it"}},
    )
    async def readyz() -> JSONResponse:
        """200 when every check passes, 503 otherwise; `failed` lists the checks that did not,
        `checks` each one's result."""
        readiness = await run_checks(checks)
        return JSONResponse(readiness.to_json(), status_code=200 if readiness.ok else 503)

    return router
