"""Nodes (worker processes) on this store, workflow definitions, and health."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from baton.core.roles import Role
from baton.server.auth import guard
from baton.server.context import Control, control
from baton.server.views import Node, node_view

router = APIRouter(tags=["nodes"])
Ctl = Annotated[Control, Depends(control)]


class Workflow(BaseModel):
    name: str
    version: str
    latest: bool
    timeout: float | None = None


@router.get("/api/v1/nodes", response_model=list[Node], **guard(Role.VIEWER))
def list_nodes(ctl: Ctl) -> list[Node]:
    ttl = ctl.app._options.worker_ttl
    owned = ctl.app.store.owned_runs()
    now = time.time()
    return [node_view(w, owned.get(w.worker_id, 0), now, ttl) for w in ctl.app.store.list_workers()]


@router.get(
    "/api/v1/workflows", response_model=list[Workflow], tags=["workflows"], **guard(Role.VIEWER)
)
def list_workflows(ctl: Ctl) -> list[Workflow]:
    registry = ctl.app.registry
    found = []
    for name, version in registry.served():
        wf = registry.workflow(name, version)
        latest = registry.workflow(name).version == version
        found.append(Workflow(name=name, version=version, latest=latest, timeout=wf.timeout))
    return found


@router.get("/healthz", tags=["health"])
def healthz() -> dict[str, str]:
    """The process answers (no token needed)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["health"])
def readyz(ctl: Ctl) -> JSONResponse:
    """The store answers and the node is not stopping (no token needed)."""
    try:
        ctl.app.store.count_runs(["ENQUEUED"])
    except Exception as exc:  # a store that cannot answer makes the node unready, not broken
        body = {"status": "unavailable", "reason": str(exc)}
        return JSONResponse(body, status_code=503)
    stopping = bool(getattr(ctl.node, "stopping", False))
    if stopping:
        return JSONResponse({"status": "stopping"}, status_code=503)
    return JSONResponse({"status": "ready"})
