"""Analytics: latency percentiles, success rate and failures per workflow and step."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from baton.core.events import rfc3339
from baton.core.roles import Role
from baton.engine.analytics import summarize
from baton.server.auth import guard
from baton.server.context import Control, control

router = APIRouter(prefix="/api/v1", tags=["analytics"])
Ctl = Annotated[Control, Depends(control)]


@router.get("/analytics", **guard(Role.VIEWER))
def analytics(
    ctl: Ctl,
    window: Annotated[
        float, Query(gt=0, le=90 * 86400, description="Seconds back from now.")
    ] = 3600,
    workflow: str | None = None,
    buckets: Annotated[int, Query(ge=1, le=500)] = 30,
) -> dict[str, Any]:
    until = time.time()
    found = summarize(ctl.app.store, until - window, until, workflow, buckets)
    found["since"], found["until"] = rfc3339(found["since"]), rfc3339(found["until"])
    for slot in found["timeline"]:
        slot["start"] = rfc3339(slot["start"])
    found["window_s"] = window
    return found
