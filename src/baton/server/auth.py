"""Bearer tokens with roles, checked on every route (and on every call over the socket)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request

from baton.core.roles import Role
from baton.server.problems import Problem


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class TokenGrant:
    name: str
    token: str
    role: Role


class Authenticator:
    """With no tokens, every caller is `anonymous` (the node refuses to bind beyond loopback
    then); with tokens, every request needs one."""

    def __init__(self, tokens: Iterable[Any] = (), anonymous: Role | None = Role.ADMIN) -> None:
        self.grants = [TokenGrant(t.name, t.token, Role(t.role)) for t in tokens]
        self.anonymous = anonymous if not self.grants else None

    @property
    def required(self) -> bool:
        return self.anonymous is None

    def principal(self, authorization: str | None) -> Principal:
        if self.anonymous is not None and not authorization:
            return Principal("anonymous", self.anonymous)
        if not authorization:
            raise _unauthorized("this node needs a bearer token (Authorization: Bearer …)")
        scheme, _, presented = authorization.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        presented = presented.strip()
        match = None
        for grant in self.grants:  # compare with every grant: no early exit to time
            if hmac.compare_digest(grant.token.encode(), presented.encode()):
                match = grant
        if match is None:
            if self.anonymous is not None:
                return Principal("anonymous", self.anonymous)
            raise _unauthorized("the token is not valid for this node")
        return Principal(match.name, match.role)


def _unauthorized(detail: str) -> Problem:
    return Problem(
        401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"}, slug="unauthorized"
    )


def caller(request: Request) -> Principal:
    """The authenticated caller (set by the role check of the route)."""
    found = getattr(request.state, "principal", None)
    if found is None:
        found = request.app.state.control.auth.principal(request.headers.get("authorization"))
        request.state.principal = found
    return found


def _need(role: Role):  # type: ignore[no-untyped-def]
    # async: checked on the event loop, not sent through the thread pool like a sync dependency
    async def check(request: Request) -> Principal:
        who = caller(request)
        if who.role < role:
            raise Problem(
                403,
                "Forbidden",
                f"this needs the {role} role; the token {who.name!r} has {who.role}",
                slug="forbidden",
                required_role=str(role),
            )
        return who

    return check


def guard(role: Role) -> dict[str, Any]:
    """Route keyword arguments: the role check, and the role shown in the OpenAPI document."""
    return {"dependencies": [Depends(_need(role))], "openapi_extra": {"x-baton-role": str(role)}}
