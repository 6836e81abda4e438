"""The control plane's ASGI application: REST /api/v1, streams, hooks, metrics, dashboard."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from baton.core.roles import Role
from baton.server import problems
from baton.server.auth import Authenticator
from baton.server.context import Control
from baton.server.limits import BodyLimit
from baton.server.routes import agents, analytics, approvals, dlq, events, nodes, runs, schedules

if TYPE_CHECKING:
    from baton.engine.app import App

DEFAULT_MAX_BODY = 1 << 20


def create_api(
    app: App,
    *,
    tokens: Iterable[Any] = (),
    anonymous: Role | None = Role.ADMIN,
    max_body: int = DEFAULT_MAX_BODY,
    node: Any = None,
    hooks: dict[str, Any] | None = None,
) -> FastAPI:
    """The API for `app`. `tokens` are objects with name, token and role; with none, callers
    need no token and act as `anonymous` (serve binds loopback only then)."""
    api = FastAPI(
        title="Baton",
        version="1",
        summary="Durable workflows, agents and their events: the control plane of a node.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    api.state.control = Control(
        app=app,
        auth=Authenticator(tokens, anonymous),
        max_body=max_body,
        node=node,
        hooks=dict(hooks or {}),
    )
    problems.install(api)
    for module in (runs, approvals, dlq, schedules, agents, events, nodes, analytics):
        api.include_router(module.router)
    api.add_middleware(BodyLimit, limit=max_body)
    return api
