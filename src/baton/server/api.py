"""The control plane's ASGI application: REST /api/v1, streams, hooks, metrics, dashboard."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from baton.core.roles import Role
from baton.server import hub, problems, streams
from baton.server.auth import Authenticator
from baton.server.context import Control
from baton.server.dashboard import routes as dashboard
from baton.server.limits import BodyLimit
from baton.server.routes import (
    agents,
    analytics,
    approvals,
    dlq,
    events,
    flags,
    metrics,
    nodes,
    runs,
    schedules,
)
from baton.server.routes import hooks as inbound_hooks
from baton.server.routes import webhooks as outbound_webhooks
from baton.server.tracing import TraceContext

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
        # Baton traces runs itself (server/tracing.py); FastAPI's own instrumentation would
        # look up the global OpenTelemetry providers on every request
        telemetry={"tracing": False, "metrics": False, "logs": False},
        lifespan=hub.lifespan,  # starts and stops control.extras["hub"]
    )
    api.state.control = Control(
        app=app,
        auth=Authenticator(tokens, anonymous),
        max_body=max_body,
        node=node,
        hooks=dict(hooks or {}),
    )
    api.state.control.extras["hub"] = hub.EventHub(app.store)  # the event log's one reader
    problems.install(api)
    routes = (runs, approvals, dlq, schedules, agents, events, flags)
    routes += (nodes, analytics, metrics, streams)
    for module in routes:
        api.include_router(module.router)
    api.include_router(outbound_webhooks.router)  # outbound subscriptions and deliveries
    api.include_router(inbound_hooks.router)  # POST /hooks/{name}: signed, no bearer token
    dashboard.mount(api)  # pages at /, partials, actions, /login, /static
    api.add_middleware(BodyLimit, limit=max_body)
    api.add_middleware(TraceContext)
    return api
