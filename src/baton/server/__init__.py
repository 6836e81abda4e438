"""The control plane: REST /api/v1, WebSocket streams, webhooks, metrics and the dashboard."""

from __future__ import annotations

from typing import Any

__all__ = ["create_api"]


def __getattr__(name: str) -> Any:
    # lazily, so that the CLI can use the views without loading the whole web stack
    if name == "create_api":
        from baton.server.api import create_api

        return create_api
    raise AttributeError(name)
