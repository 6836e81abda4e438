"""Where a command's data comes from: a running node's REST API over its UNIX socket, or the
store opened directly when no node answers. Both give the same documents, the API's JSON
shapes (`baton.server.views`), so tables and `--json` are the same either way."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import typer

from baton.agents.client import ControlClient
from baton.agents.errors import ControlError, ControlUnavailable
from baton.cli.remote import DEFAULT_SOCKET, TOKEN_ENV, NodeClient, NodeProblem, NodeUnavailable
from baton.cli.remote import segment as seg
from baton.cli.store import fail, open_app
from baton.core.errors import RunNotFound
from baton.engine.app import App
from baton.server import views

Doc = dict[str, Any]
SOCKET_KEY = "baton.node_socket"  # ctx.meta: the node's socket, from `baton --socket`
RUNS_PAGE, EVENTS_PAGE, APPROVALS_MAX = 500, 1000, 1000  # the API's largest pages
AGENTS_SOCKET = "agents.sock"  # a node's orchestrator control socket, beside its own socket


class Backend(Protocol):
    def runs(self, statuses: list[str] | None, workflow: str | None, limit: int) -> list[Doc]: ...
    def run(self, run_id: str) -> Doc: ...
    def steps(self, run_id: str) -> list[Doc]: ...
    def cancel(self, run_id: str) -> Doc: ...
    def redrive(self, run_id: str) -> Doc: ...
    def events(
        self, run: str | None, type_: str | None, corr: str | None, after: int, limit: int
    ) -> list[Doc]: ...
    def approvals(self, status: str | None, run_id: str | None, limit: int) -> list[Doc]: ...
    def decide(
        self, run_id: str, name: str, approved: bool, by: str | None, comment: str | None
    ) -> Doc: ...
    def schedules(self) -> list[Doc]: ...
    def schedule(self, name: str, action: str) -> Doc: ...  # pause, resume (a schedule)
    def trigger(self, name: str) -> Doc: ...  # a run
    def nodes(self, ttl: float) -> list[Doc]: ...


def node_socket(ctx: typer.Context) -> str:
    return ctx.meta.get(SOCKET_KEY) or os.environ.get("BATON_SOCKET") or DEFAULT_SOCKET


def find_node(ctx: typer.Context) -> NodeClient | None:
    """A client of the node answering on the socket, or None."""
    return NodeClient.connect(node_socket(ctx), os.environ.get(TOKEN_ENV) or None)


@contextmanager
def connect(ctx: typer.Context) -> Iterator[Backend]:
    """The node when one answers, else the store (`--store`); errors become `error: ...`."""
    client = find_node(ctx)
    if client is None:
        with open_app(ctx.obj) as app:
            yield Direct(app)
        return
    try:
        yield Node(client)
    except NodeProblem as exc:
        fail(exc.message)
    except NodeUnavailable as exc:
        fail(str(exc))
    finally:
        client.close()


def _dump(view: Any) -> Doc:
    return view.model_dump(mode="json")


class Direct:
    """The store, through an App without a worker."""

    def __init__(self, app: App) -> None:
        self.app = app

    def runs(self, statuses: list[str] | None, workflow: str | None, limit: int) -> list[Doc]:
        return [_dump(views.run_view(r)) for r in self.app.runs(statuses, workflow, limit)]

    def run(self, run_id: str) -> Doc:
        found = self.app.get_run(run_id)
        if found is None:
            raise RunNotFound(run_id)
        return _dump(views.run_view(found))

    def steps(self, run_id: str) -> list[Doc]:
        return [_dump(views.step_view(s)) for s in self.app.steps(run_id)]

    def cancel(self, run_id: str) -> Doc:
        return _dump(views.run_view(self.app.cancel(run_id)))

    def redrive(self, run_id: str) -> Doc:
        return _dump(views.run_view(self.app.redrive(run_id).info()))

    def events(
        self, run: str | None, type_: str | None, corr: str | None, after: int, limit: int
    ) -> list[Doc]:
        found = self.app.events(run, type_, corr, after, limit)
        return [_dump(views.event_view(e)) for e in found]

    def approvals(self, status: str | None, run_id: str | None, limit: int) -> list[Doc]:
        return [_dump(views.approval_view(a)) for a in self.app.approvals(status, run_id, limit)]

    def decide(
        self, run_id: str, name: str, approved: bool, by: str | None, comment: str | None
    ) -> Doc:
        return _dump(views.approval_view(self.app.decide(run_id, name, approved, by, comment)))

    def schedules(self) -> list[Doc]:
        return [_dump(views.schedule_view(s)) for s in self.app.schedules()]

    def schedule(self, name: str, action: str) -> Doc:
        act = self.app.pause_schedule if action == "pause" else self.app.resume_schedule
        return _dump(views.schedule_view(act(name)))

    def trigger(self, name: str) -> Doc:
        return _dump(views.run_view(self.app.trigger_schedule(name).info()))

    def nodes(self, ttl: float) -> list[Doc]:
        store, now = self.app.store, time.time()
        owned = store.owned_runs()
        found = store.list_workers()
        return [_dump(views.node_view(w, owned.get(w.worker_id, 0), now, ttl)) for w in found]


class Node:
    """A running node's REST API."""

    def __init__(self, client: NodeClient) -> None:
        self.api = client

    def runs(self, statuses: list[str] | None, workflow: str | None, limit: int) -> list[Doc]:
        status = ",".join(statuses) if statuses else None
        found: list[Doc] = []
        cursor = None
        while len(found) < limit:
            size = min(limit - len(found), RUNS_PAGE)
            page = self.api.get(
                "/runs", status=status, workflow=workflow, limit=size, cursor=cursor
            )
            found += page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return found

    def run(self, run_id: str) -> Doc:
        return self.api.get(f"/runs/{seg(run_id)}")

    def steps(self, run_id: str) -> list[Doc]:
        return self.api.get(f"/runs/{seg(run_id)}/steps")

    def cancel(self, run_id: str) -> Doc:
        return self.api.post(f"/runs/{seg(run_id)}/cancel")

    def redrive(self, run_id: str) -> Doc:
        return self.api.post(f"/runs/{seg(run_id)}/redrive")

    def events(
        self, run: str | None, type_: str | None, corr: str | None, after: int, limit: int
    ) -> list[Doc]:
        found: list[Doc] = []
        while len(found) < limit:
            size = min(limit - len(found), EVENTS_PAGE)
            page = self.api.get(
                "/events", run_id=run, type=type_, correlation_id=corr, after=after, limit=size
            )
            found += page["items"]
            if len(page["items"]) < size:
                break
            after = page["next_after"]
        return found

    def approvals(self, status: str | None, run_id: str | None, limit: int) -> list[Doc]:
        size = min(limit, APPROVALS_MAX)
        return self.api.get("/approvals", status=status or "ALL", run_id=run_id, limit=size)

    def decide(
        self, run_id: str, name: str, approved: bool, by: str | None, comment: str | None
    ) -> Doc:
        body = {"approved": approved, "by": by, "comment": comment}
        return self.api.post(f"/runs/{seg(run_id)}/approvals/{seg(name)}", body)

    def schedules(self) -> list[Doc]:
        return self.api.get("/schedules")

    def schedule(self, name: str, action: str) -> Doc:
        return self.api.post(f"/schedules/{seg(name)}/{action}")

    def trigger(self, name: str) -> Doc:
        return self.api.post(f"/schedules/{seg(name)}/trigger")

    def nodes(self, ttl: float) -> list[Doc]:
        # the node judges liveness by its own worker TTL; a shorter --ttl makes more gone
        found = self.api.get("/nodes")
        for doc in found:
            if doc["heartbeat_age"] > ttl:
                doc["state"] = "gone"
        return found


class NodeAgents:
    """`baton agents` through a node: ps, status, start, stop and restart over its REST API;
    history, stats, shutdown, and stopping `api` itself on its orchestrator's control socket
    (beside its socket).
    Answers and errors are those of `ControlClient`, so the commands print the same."""

    def __init__(self, client: NodeClient, timeout: float) -> None:
        self.client = client
        self.control = ControlClient(Path(client.path).parent / AGENTS_SOCKET, timeout=timeout)

    def request(self, op: str, **fields: Any) -> Any:
        name = seg(str(fields.get("name", "")))
        if op in ("stop", "restart") and fields.get("name") == "api":
            return self.control.request(op, **fields)  # not through the server being stopped
        try:
            if op == "ps":
                return self.client.get("/agents")
            if op == "status":
                return self.client.get(f"/agents/{name}")
            if op in ("start", "stop", "restart"):
                return self.client.post(f"/agents/{name}/{op}")
        except NodeProblem as exc:
            raise ControlError(exc.title, exc.message.removeprefix(f"{exc.title}: ")) from None
        except NodeUnavailable as exc:
            raise ControlUnavailable(self.client.path, str(exc)) from None
        return self.control.request(op, **fields)

    def shutdown(self, timeout: float | None = None) -> Any:
        return self.control.shutdown(timeout)
