"""Approvals ("MAN mode"): list them, decide one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from baton.core.roles import Role
from baton.server.auth import caller, guard
from baton.server.context import Control, control
from baton.server.views import Approval, Text, approval_view

router = APIRouter(prefix="/api/v1", tags=["approvals"])
Ctl = Annotated[Control, Depends(control)]
_OPERATOR = guard(Role.OPERATOR)


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    approved: bool
    comment: Text | None = Field(default=None, max_length=10_000)
    by: Text | None = Field(
        default=None, max_length=200, description="Who decides; the token's name by default."
    )


@router.get("/approvals", response_model=list[Approval], **guard(Role.VIEWER))
def list_approvals(
    ctl: Ctl,
    status: Annotated[str | None, Query(description="PENDING (default) or ALL")] = "PENDING",
    run_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Approval]:
    wanted = None if status is None or status.upper() == "ALL" else status
    return [approval_view(a) for a in ctl.app.approvals(wanted, run_id, limit)]


@router.post("/runs/{run_id}/approvals/{name}", response_model=Approval, **_OPERATOR)
def decide(
    run_id: str,
    name: str,
    body: Decision,
    ctl: Ctl,
    request: Request,
) -> Approval:
    who = caller(request)
    decided = ctl.app.decide(run_id, name, body.approved, body.by or who.name, body.comment)
    return approval_view(decided)
