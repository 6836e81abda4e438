"""`baton nodes ls`: the worker processes on the store, their heartbeats and their runs."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from baton.cli import render
from baton.cli.options import AsJson
from baton.cli.store import open_app
from baton.core.events import rfc3339
from baton.engine import liveness
from baton.store.records import WorkerRecord

app = typer.Typer(help="Nodes: the worker processes sharing this store.", no_args_is_help=True)

COLUMNS = ("id", "host", "pid", "heartbeat age", "runs owned", "versions served", "state")
Ttl = Annotated[
    float,
    typer.Option("--ttl", help="Seconds without a heartbeat after which a node counts as gone."),
]


def node_document(worker: WorkerRecord, owned: int, now: float, ttl: float) -> dict[str, Any]:
    return {
        "id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "started_at": rfc3339(worker.started_at),
        "heartbeat_at": rfc3339(worker.heartbeat_at),
        "heartbeat_age": round(max(0.0, now - worker.heartbeat_at), 3),
        "runs_owned": owned,
        "versions": list(worker.versions),
        "state": "gone" if liveness.is_gone(worker, now, ttl) else "alive",
    }


@app.command("ls")
def list_nodes(ctx: typer.Context, ttl: Ttl = 30.0, as_json: AsJson = False) -> None:
    """List the nodes (worker processes) with their heartbeat age and the runs they hold."""
    with open_app(ctx.obj) as baton_app:
        workers = baton_app.store.list_workers()
        owned = baton_app.store.owned_runs()
    now = time.time()
    docs = [node_document(w, owned.get(w.worker_id, 0), now, ttl) for w in workers]
    if as_json:
        render.emit_json(docs)
        return
    rows = [
        [
            d["id"],
            d["host"],
            d["pid"],
            f"{d['heartbeat_age']:.1f}s",
            d["runs_owned"],
            ", ".join(d["versions"]),
            Text(d["state"], style="green" if d["state"] == "alive" else "red"),
        ]
        for d in docs
    ]
    render.show_table(COLUMNS, rows, "no nodes", keep=("id",))
