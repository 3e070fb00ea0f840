"""GET /metrics: Prometheus text exposition of the process's metrics (limner/metrics.py).

Unauthenticated, as scrapers expect; put it behind the network boundary you scrape from.
"""

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
def get_metrics() -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
