"""A request's W3C trace context becomes the current one, so a run it starts joins its trace."""

from __future__ import annotations

from opentelemetry import context, propagate
from starlette.types import ASGIApp, Receive, Scope, Send


class TraceContext:
    """Pure ASGI middleware: attach the context of a `traceparent` header for the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers") or ()
            if k in (b"traceparent", b"tracestate")
        }
        if "traceparent" not in headers:
            await self.app(scope, receive, send)
            return
        token = context.attach(propagate.extract(headers))
        try:
            await self.app(scope, receive, send)
        finally:
            context.detach(token)
