"""Feature flags: read them, and flip them at run time (no restart)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from baton.core.roles import Role
from baton.server.auth import caller, guard
from baton.server.context import Control, control
from baton.server.problems import Problem
from baton.server.views import JsonValue

router = APIRouter(prefix="/api/v1", tags=["flags"])
Ctl = Annotated[Control, Depends(control)]


class FlagValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: JsonValue


@router.get("/flags", **guard(Role.VIEWER))
def list_flags(ctl: Ctl) -> dict[str, Any]:
    """Every flag's value: stored values over the node's configured defaults."""
    return ctl.app.flags.all()


@router.get("/flags/{name}", **guard(Role.VIEWER))
def get_flag(name: str, ctl: Ctl) -> dict[str, Any]:
    found = ctl.app.flags.all()
    if name not in found:
        raise Problem(404, "Flag not found", f"no flag named {name!r}", slug="flag-not-found")
    return {"name": name, "value": found[name]}


@router.put("/flags/{name}", **guard(Role.ADMIN))
def set_flag(name: str, body: FlagValue, ctl: Ctl, request: Request) -> dict[str, Any]:
    """Set a flag; workflows and steps see it within half a second, on every node."""
    ctl.app.flags.set(name, body.value, by=caller(request).name)
    return {"name": name, "value": body.value}


@router.delete("/flags/{name}", status_code=204, **guard(Role.ADMIN))
def delete_flag(name: str, ctl: Ctl, request: Request) -> None:
    """Forget a stored value (the configured default, if any, applies again)."""
    if not ctl.app.flags.delete(name, by=caller(request).name):
        detail = f"no stored flag named {name!r}"
        raise Problem(404, "Flag not found", detail, slug="flag-not-found")
