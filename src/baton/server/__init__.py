"""The control plane: REST /api/v1, WebSocket streams, webhooks, metrics and the dashboard."""

from baton.server.api import create_api

__all__ = ["create_api"]
