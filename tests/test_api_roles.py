"""Every route of the API checks its role over HTTP: no token 401, a lower role 403, the
declared role (and above) gets through. A new /api/v1 route that declares no role fails here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apikit import TOKENS, Served, agents_node, assert_problem, served
from baton.core.roles import Role

# routes that need no token although they are API routes, and why
ALLOW_LIST = {
    "/api/v1/openapi.json": "the API's own description",
    "/api/v1/docs": "the interactive docs page (it calls the API with the user's token)",
    "/hooks/{name}": "inbound webhooks are authenticated by their signature",
}
# WebSocket routes have no OpenAPI operation; the role each needs (viewer unless listed)
WS_ROLES: dict[str, Role] = {}
MISSING = "0190c7a0-0000-7000-8000-00000000dead"  # a well-formed id no store holds
PARAMS = {"run_id": MISSING, "subscription_id": MISSING, "delivery_id": MISSING}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with (
        agents_node() as node,
        served(tmp_path_factory.mktemp("roles") / "baton.db", node=node) as s,
    ):
        yield s


@dataclass(frozen=True)
class RouteInfo:
    kind: str  # "http" (an APIRoute), "ws" (an APIWebSocketRoute) or "other"
    path: str  # the full path, prefixes included
    methods: tuple[str, ...]
    role: str | None  # the route's x-baton-role
    in_schema: bool

    @property
    def params(self) -> list[str]:
        return re.findall(r"{(\w+)(?::\w+)?}", self.path)


def _routes(s: Served) -> list[RouteInfo]:
    """Every route of the app, included routers flattened (FastAPI ≥ 0.16x nests them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # an older FastAPI: api.routes is flat
        pairs = [(r, r) for r in s.api.routes]
    else:
        pairs = [(c.original_route, c) for c in iter_route_contexts(s.api.routes)]
    found = []
    for original, effective in pairs:
        kind = {APIRoute: "http", APIWebSocketRoute: "ws"}.get(type(original), "other")
        extra = getattr(original, "openapi_extra", None) or {}
        found.append(
            RouteInfo(
                kind,
                getattr(effective, "path", None) or getattr(original, "path", ""),
                tuple(sorted(getattr(effective, "methods", None) or ())),
                extra.get("x-baton-role"),
                bool(getattr(original, "include_in_schema", False)),
            )
        )
    return found


def _fill(route: RouteInfo) -> str:
    path = route.path
    for name in route.params:
        path = re.sub(r"{" + name + r"(:\w+)?}", PARAMS.get(name, f"no-such-{name}"), path)
    return path


def _calls(s: Served) -> list[tuple[str, str, Role, str]]:
    """(method, concrete path, required role, route label) of every guarded HTTP route."""
    found = []
    for route in _routes(s):
        if route.kind != "http" or route.role is None:
            continue
        try:
            role = Role.parse(route.role)
        except ValueError:
            continue  # "none (…)": authenticated otherwise; must be allow-listed (below)
        for method in route.methods:
            found.append((method, _fill(route), role, f"{method} {route.path}"))
    return found


def test_every_api_route_declares_a_role(api):
    routes = _routes(api)
    assert any(r.path == "/api/v1/runs" for r in routes)
    undeclared = []
    for route in routes:
        if route.kind == "ws" or route.path in ALLOW_LIST:
            continue
        if not route.path.startswith("/api/") and route.role is None:
            continue  # the dashboard, health: not API routes
        try:
            Role.parse(route.role or "")
        except ValueError:
            undeclared.append(f"{'/'.join(route.methods)} {route.path}: {route.role!r}")
    assert not undeclared, (
        "these API routes declare no role; add **guard(Role.X) to each (or allow-list it "
        f"in {__name__} with the reason): {undeclared}"
    )


def test_allow_listed_routes_need_no_token(api):
    anonymous = api.as_(None)
    assert anonymous.get("/api/v1/openapi.json").status_code == 200
    assert anonymous.get("/api/v1/docs").status_code == 200
    if any(r.path == "/hooks/{name}" for r in _routes(api)):
        r = anonymous.post("/hooks/no-such-hook", json={})
        assert r.status_code not in (401, 403) or "signature" in r.text, r.text


def test_roles_are_checked_over_http(api):
    calls = _calls(api)
    labels = {label for *_, label in calls}
    for must in ("POST /api/v1/runs", "GET /api/v1/runs", "POST /api/v1/dlq/{run_id}/redrive"):
        assert must in labels
    wrong = []
    for method, path, role, label in calls:
        body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
        r = api.as_(None).request(method, path, **body)
        if r.status_code != 401 or r.headers.get("www-authenticate") != "Bearer":
            wrong.append(f"{label} without a token: {r.status_code}")
        else:
            assert_problem(r, 401, "unauthorized")
        r = api.as_(None).request(
            method, path, headers={"Authorization": "Bearer not-a-token"}, **body
        )
        if r.status_code != 401:
            wrong.append(f"{label} with a bad token: {r.status_code}")
        for held in Role:
            r = api.as_(held).request(method, path, **body)
            if held < role and r.status_code != 403:
                wrong.append(f"{label} as {held} (needs {role}): {r.status_code}, not 403")
            elif held < role:
                assert assert_problem(r, 403, "forbidden")["required_role"] == str(role)
            elif r.status_code in (401, 403) or r.status_code >= 500:
                wrong.append(f"{label} as {held} (needs {role}): {r.status_code} {r.text}")
    assert not wrong, "\n".join(wrong)


def test_openapi_shows_each_operations_role(api):
    doc = api.viewer.get("/api/v1/openapi.json").json()
    shown = {
        (method.upper(), path): op.get("x-baton-role")
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    for route in _routes(api):
        if route.kind == "http" and route.in_schema:
            for method in route.methods:
                assert shown[(method, route.path)] == route.role, (method, route.path)
    for (method, path), role in shown.items():
        if path.startswith("/api/") and path not in ALLOW_LIST:
            assert role in {str(r) for r in Role}, (method, path, role)


def test_websockets_need_a_token_of_their_role(api):
    routes = [r for r in _routes(api) if r.kind == "ws" and r.path.startswith("/api/")]
    base = api.url.replace("http://", "ws://")
    wrong = []
    for route in routes:
        needed = WS_ROLES.get(route.path, Role.VIEWER)
        path = _fill(route)
        for held in (None, *Role):
            headers = {} if held is None else {"Authorization": f"Bearer {TOKENS[held].token}"}
            code = _close_code(f"{base}{path}", headers)
            refused = code == 1008
            if refused != (held is None or held < needed):
                wrong.append(f"WS {route.path} as {held}: close code {code}")
        by_query = _close_code(f"{base}{path}?token={TOKENS[needed].token}", {})
        if by_query == 1008:
            wrong.append(f"WS {route.path} with ?token=: refused")
    assert not wrong, "\n".join(wrong)


def _close_code(url: str, headers: dict[str, str]) -> int | None:
    """The close code the server ends the stream with at once, or None if it stays open."""
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        try:
            ws.recv(timeout=0.5)
        except TimeoutError:
            return None
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
        return None  # a message: the stream is open
