"""Refuse oversized request bodies before they are read into memory, and URLs with NUL."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from baton.server.problems import MEDIA_TYPE, problem_type


class BodyLimit:
    """Pure ASGI middleware: a declared or streamed body over `limit` bytes gets 413; a path
    or query with a NUL character (%00) gets 400 (PostgreSQL cannot store NUL in text, and no
    name or id the API knows contains one)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            await self._answer(scope, send, 400, "nul-in-url", "NUL in URL", _NUL)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        refused = answered = False

        async def limited() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded(message: Message) -> None:
            # the app may turn the refused read into an answer of its own (FastAPI: a 400
            # "error parsing the body"); once refused, the answer is 413 whatever it says
            nonlocal answered
            if not refused:
                answered = answered or message["type"] == "http.response.start"
                await send(message)
            elif not answered:
                answered = True
                await self._refuse(scope, send)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not refused:
                raise
            if not answered:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"the request body is larger than {self.limit} bytes"
        await self._answer(scope, send, 413, "body-too-large", "Body too large", detail)

    async def _answer(
        self, scope: Scope, send: Send, status: int, slug: str, title: str, detail: str
    ) -> None:
        body = json.dumps(
            {
                "type": problem_type(slug),
                "title": title,
                "status": status,
                "detail": detail,
                "instance": scope.get("path", "").replace("\x00", "%00"),
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


_NUL = "the URL's path or query contains a NUL character (%00)"
