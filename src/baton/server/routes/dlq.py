"""The dead-letter queue: runs that exhausted their retries, and redriving them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from baton.core.errors import InvalidState, RunNotFound
from baton.core.roles import Role
from baton.server.auth import guard
from baton.server.context import Control, control
from baton.server.views import Run, run_view
from baton.store.records import RunStatus

router = APIRouter(prefix="/api/v1", tags=["dead-letter queue"])
Ctl = Annotated[Control, Depends(control)]


@router.get("/dlq", response_model=list[Run], **guard(Role.VIEWER))
def list_dead(
    ctl: Ctl,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Run]:
    return [run_view(r) for r in ctl.app.store.list_runs([RunStatus.DEAD], workflow, limit)]


@router.post("/dlq/{run_id}/redrive", response_model=Run, **guard(Role.OPERATOR))
def redrive(run_id: str, ctl: Ctl) -> Run:
    run = ctl.app.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    if run.status != RunStatus.DEAD:
        raise InvalidState(run_id, run.status, "redrive from the dead-letter queue")
    ctl.app.redrive(run_id)
    return run_view(ctl.app.get_run(run_id) or run)
