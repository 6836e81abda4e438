"""Schedules: list, pause, resume, trigger now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from baton.core.errors import ScheduleNotFound
from baton.core.roles import Role
from baton.server.auth import guard
from baton.server.context import Control, control
from baton.server.views import Run, Schedule, run_view, schedule_view

router = APIRouter(prefix="/api/v1", tags=["schedules"])
Ctl = Annotated[Control, Depends(control)]


@router.get("/schedules", response_model=list[Schedule], **guard(Role.VIEWER))
def list_schedules(ctl: Ctl) -> list[Schedule]:
    return [schedule_view(s) for s in ctl.app.schedules()]


@router.get("/schedules/{name}", response_model=Schedule, **guard(Role.VIEWER))
def get_schedule(name: str, ctl: Ctl) -> Schedule:
    found = ctl.app.store.get_schedule(name)
    if found is None:
        raise ScheduleNotFound(name)
    return schedule_view(found)


@router.post("/schedules/{name}/pause", response_model=Schedule, **guard(Role.OPERATOR))
def pause(name: str, ctl: Ctl) -> Schedule:
    return schedule_view(ctl.app.pause_schedule(name))


@router.post("/schedules/{name}/resume", response_model=Schedule, **guard(Role.OPERATOR))
def resume(name: str, ctl: Ctl) -> Schedule:
    return schedule_view(ctl.app.resume_schedule(name))


@router.post(
    "/schedules/{name}/trigger", status_code=201, response_model=Run, **guard(Role.OPERATOR)
)
def trigger(name: str, ctl: Ctl) -> Run:
    handle = ctl.app.trigger_schedule(name)
    return run_view(handle.info())
