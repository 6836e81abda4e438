"""The node's agents (its API server, workers and scheduler among them): ps, start, stop,
restart."""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response

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


# the agent serving this very request: stopping it inline would cut the answer off
SELF = "api"


def _act(ctl: Control, op: str, name: str, response: Response) -> dict[str, Any]:
    orch = ctl.orchestrator()
    if name == SELF and op in ("stop", "restart"):
        orch.status(name)  # an unknown name still answers 404
        threading.Thread(target=getattr(orch, op), args=(name,), daemon=True).start()
        response.status_code = 202
        return {"name": name, "state": "accepted", "status": orch.status(name)}
    state = getattr(orch, op)(name)
    return {"name": name, "state": str(state), "status": orch.status(name)}


@router.post("/agents/{name}/start", **guard(Role.OPERATOR))
def start(name: str, ctl: Ctl, response: Response) -> dict[str, Any]:
    return _act(ctl, "start", name, response)


@router.post(
    "/agents/{name}/stop",
    description="202 for the `api` agent itself: it stops after answering.",
    **guard(Role.OPERATOR),
)
def stop(name: str, ctl: Ctl, response: Response) -> dict[str, Any]:
    return _act(ctl, "stop", name, response)


@router.post("/agents/{name}/restart", **guard(Role.OPERATOR))
def restart(name: str, ctl: Ctl, response: Response) -> dict[str, Any]:
    return _act(ctl, "restart", name, response)
