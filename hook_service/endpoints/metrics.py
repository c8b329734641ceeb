"""``GET /metrics``: the Prometheus text format (docs/operations.md, "Metrics")."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from hook_service.metrics_export import CONTENT_TYPE, Exporter


async def prometheus_metrics(request: Request) -> Response:
    """Every worker's counters and histograms, and the key-set and policy gauges."""
    exporter: Exporter = request.app.state.metrics
    headers = {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"}
    return Response(exporter.render(), headers=headers)
