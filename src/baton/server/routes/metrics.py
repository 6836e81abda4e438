"""Prometheus exposition at /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from baton.core.roles import Role
from baton.observability import metrics
from baton.server.auth import guard
from baton.server.context import Control, control

router = APIRouter(tags=["metrics"])
Ctl = Annotated[Control, Depends(control)]


@router.get("/metrics", response_class=Response, **guard(Role.VIEWER))
def scrape(ctl: Ctl) -> Response:
    """Counters of this process (runs, steps, agents, webhook deliveries) and gauges read from
    the store (runs by status, queue depth, dead-letter queue size)."""
    body, content_type = metrics.render(ctl.app.store)
    return Response(body, media_type=content_type)
