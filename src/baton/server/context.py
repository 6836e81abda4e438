"""What every route reaches through `request.app.state.control`: the App, auth and the node."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import Request

from baton.server.auth import Authenticator
from baton.server.problems import Problem

if TYPE_CHECKING:
    from baton.engine.app import App


@dataclass
class Control:
    app: App
    auth: Authenticator
    max_body: int = 1 << 20
    node: Any = None  # the hosting node (agents, config), when served by `baton serve`
    hooks: dict[str, Any] = field(default_factory=dict)  # inbound webhook triggers by name
    extras: dict[str, Any] = field(default_factory=dict)  # parts added by other modules

    def orchestrator(self) -> Any:
        orch = getattr(self.node, "orchestrator", None)
        if orch is None:
            raise Problem(
                503,
                "No agents here",
                "this API is not served by a node, so it hosts no agents",
                slug="no-node",
            )
        return orch


async def control(request: Request) -> Control:
    # async: a sync dependency would take a trip through the thread pool on every request
    return request.app.state.control
