"""`baton nodes ls`: the worker processes on the store, their heartbeats and their runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from baton.cli import render
from baton.cli.backend import connect
from baton.cli.options import AsJson

app = typer.Typer(help="Nodes: the worker processes sharing this store.", no_args_is_help=True)

COLUMNS = ("id", "host", "pid", "heartbeat age", "runs owned", "versions served", "state")
Ttl = Annotated[
    float,
    typer.Option("--ttl", help="Seconds without a heartbeat after which a node counts as gone."),
]


@app.command("ls")
def list_nodes(ctx: typer.Context, ttl: Ttl = 30.0, as_json: AsJson = False) -> None:
    """List the nodes (worker processes) with their heartbeat age and the runs they hold."""
    with connect(ctx) as backend:
        docs = backend.nodes(ttl)
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
