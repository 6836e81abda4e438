"""A control-plane API over an App with real workflows, for the HTTP API tests.

Workflows: `greet` (two steps), `flaky` (retries into the dead-letter queue while
`switch["fail"]`), `expense` (waits for the approval "manager"), `waiter` (waits for the
signal "go"), `napper` (sleeps an hour: something to cancel); schedule `nightly` starts `greet`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

import baton
from baton.core.roles import Role
from baton.server.api import create_api
from serverkit import client, serving

PROBLEM = "application/problem+json"


@dataclass(frozen=True)
class Token:
    name: str
    token: str
    role: Role


TOKENS = {
    Role.VIEWER: Token("vic", "viewer-secret-1", Role.VIEWER),
    Role.OPERATOR: Token("olga", "operator-secret-2", Role.OPERATOR),
    Role.ADMIN: Token("ada", "admin-secret-3", Role.ADMIN),
}


@dataclass
class Served:
    """An App serving its API on loopback, with a client per role."""

    app: baton.App
    url: str
    switch: dict[str, Any]
    calls: dict[str, int]
    api: Any = None  # the FastAPI application
    clients: dict[Role | None, httpx.Client] = field(default_factory=dict)

    def as_(self, role: Role | None) -> httpx.Client:
        """A client with the token of `role` (None: no token)."""
        if role not in self.clients:
            token = None if role is None else TOKENS[role].token
            self.clients[role] = client(self.url, token)
        return self.clients[role]

    @property
    def viewer(self) -> httpx.Client:
        return self.as_(Role.VIEWER)

    @property
    def operator(self) -> httpx.Client:
        return self.as_(Role.OPERATOR)

    @property
    def admin(self) -> httpx.Client:
        return self.as_(Role.ADMIN)


def build_app(store: str | Path, **options: Any) -> tuple[baton.App, dict[str, Any], dict]:
    options.setdefault("poll_interval", 0.05)
    app = baton.App(store, **options)
    switch: dict[str, Any] = {"fail": True}
    calls: dict[str, int] = {"hello": 0, "shout": 0, "wobbly": 0}

    @app.step(name="hello")
    def hello(name: str) -> str:
        calls["hello"] += 1
        return f"hello {name}"

    @app.step(name="shout")
    def shout(text: str) -> str:
        calls["shout"] += 1
        return text.upper()

    @app.workflow()
    def greet(name: str = "world") -> str:
        return shout(hello(name))

    @app.step(name="wobbly", retry=baton.Retry(max_attempts=2, initial=0.0, jitter=False))
    def wobbly(n: int) -> int:
        calls["wobbly"] += 1
        if switch["fail"]:
            raise RuntimeError(f"wobbly {n} is down")
        return n * 2

    @app.workflow()
    def flaky(n: int) -> int:
        return wobbly(n)

    @app.workflow()
    def expense(amount: int) -> dict:
        decision = baton.wait_for_approval("manager", timeout=3600, assignees=["ann", "olga"])
        return {"amount": amount, "approved": decision.approved, "by": decision.by}

    @app.workflow()
    def waiter() -> Any:
        return {"got": baton.wait_for_signal("go", timeout=3600)}

    @app.workflow()
    def napper() -> str:
        baton.sleep(3600)
        return "rested"

    app.schedule("nightly", greet, "night", cron="0 3 * * *")
    return app, switch, calls


@contextlib.contextmanager
def agents_node() -> Iterator[Any]:
    """A stand-in for a node: a running orchestrator with one thread agent, "idler"."""
    from types import SimpleNamespace

    from agents_kit import Idle, wait_state
    from baton.agents import Orchestrator, RunMode

    orch = Orchestrator(run_mode=RunMode.DAEMON, stop_timeout=2.0, kill_timeout=1.0)
    orch.register_agent(Idle, "idler")
    orch.start()
    try:
        wait_state(orch, "idler", "RUNNING")
        yield SimpleNamespace(orchestrator=orch)
    finally:
        orch.shutdown(timeout=5)


@contextlib.contextmanager
def served(store: str | Path, **api_options: Any) -> Iterator[Served]:
    """The App of `build_app` on `store`, its worker launched, its API on loopback with a
    token per role."""
    app, switch, calls = build_app(store)
    app.launch()
    api_options.setdefault("tokens", list(TOKENS.values()))
    try:
        api = create_api(app, **api_options)
        with serving(api) as url:
            s = Served(app, url, switch, calls, api)
            try:
                yield s
            finally:
                for c in s.clients.values():
                    c.close()
    finally:
        app.shutdown(timeout=5)


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict:
    """`response` is an RFC 9457 problem document with `status` (and type `slug`)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert {"type", "title", "status"} <= set(body), body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    if slug is not None:
        assert body["type"] == f"urn:baton:problem:{slug}", body
    assert "Traceback" not in response.text
    return body
