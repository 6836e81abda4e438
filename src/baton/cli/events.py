"""`baton events`: the CloudEvents log."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from baton.cli import render
from baton.cli.backend import Doc, connect
from baton.cli.options import AsJson, Limit

app = typer.Typer(help="The event log (CloudEvents).", no_args_is_help=True)

COLUMNS = ("seq", "time", "type", "run id", "correlation id", "data")


def event_row(event: Doc) -> list[Any]:
    data = event.get("data")
    return [
        event["seq"],
        render.stamp(event["time"]),
        event["type"],
        event.get("runid") or "-",
        event.get("correlationid") or "-",
        "" if data is None else json.dumps(data, ensure_ascii=False),
    ]


@app.command("ls")
def list_events(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Option("--run", "-r", help="Only this run's events.")] = None,
    type_: Annotated[
        str | None, typer.Option("--type", "-t", help="Only this type, e.g. baton.run.dead.")
    ] = None,
    correlation: Annotated[
        str | None, typer.Option("--correlation", "-c", help="Only this correlation id.")
    ] = None,
    after: Annotated[
        int, typer.Option("--after", min=0, help="Only events after this seq (to page on).")
    ] = 0,
    limit: Limit = 100,
    as_json: AsJson = False,
) -> None:
    """List events, oldest first."""
    with connect(ctx) as backend:
        events = backend.events(run, type_, correlation, after, limit)
    if as_json:
        render.emit_json(events)
    else:
        rows = [event_row(e) for e in events]
        render.show_table(COLUMNS, rows, "no events", keep=("run id",))
