"""The node's agents (its API server, workers and scheduler among them): ps, start, stop,
restart."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from baton.core.roles import Role
from baton.server.auth import guard
from baton.server.context import Control, control

router = APIRouter(prefix="/api/v1", tags=["agents"])
Ctl = Annotated[Control, Depends(control)]


@router.get("/agents", **guard(Role.VIEWER))
def ps(ctl: Ctl) -> list[dict[str, Any]]:
    return ctl.orchestrator().ps()


@router.get("/agents/{name}", **guard(Role.VIEWER))
def status(name: str, ctl: Ctl) -> dict[str, Any]:
    return ctl.orchestrator().status(name)


def _act(ctl: Control, op: str, name: str) -> dict[str, Any]:
    orch = ctl.orchestrator()
    state = getattr(orch, op)(name)
    return {"name": name, "state": str(state), "status": orch.status(name)}


@router.post("/agents/{name}/start", **guard(Role.OPERATOR))
def start(name: str, ctl: Ctl) -> dict[str, Any]:
    return _act(ctl, "start", name)


@router.post("/agents/{name}/stop", **guard(Role.OPERATOR))
def stop(name: str, ctl: Ctl) -> dict[str, Any]:
    return _act(ctl, "stop", name)


@router.post("/agents/{name}/restart", **guard(Role.OPERATOR))
def restart(name: str, ctl: Ctl) -> dict[str, Any]:
    return _act(ctl, "restart", name)
