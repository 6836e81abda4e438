"""`baton events`: the CloudEvents log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baton.cli import render
from baton.cli.documents import event_document
from baton.cli.options import AsJson, Limit
from baton.cli.store import open_app
from baton.store.records import EventRecord

app = typer.Typer(help="The event log (CloudEvents).", no_args_is_help=True)

COLUMNS = ("seq", "time", "type", "run id", "correlation id", "data")


def event_row(event: EventRecord) -> list[Any]:
    return [
        event.seq,
        render.timestamp(event.time),
        event.type,
        event.run_id or "-",
        event.correlation_id or "-",
        render.compact_json(event.data),
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
    with open_app(ctx.obj) as baton_app:
        events = baton_app.events(run, type_, correlation, after, limit)
    if as_json:
        render.emit_json([event_document(e) for e in events])
    else:
        rows = [event_row(e) for e in events]
        render.show_table(COLUMNS, rows, "no events", keep=("run id",))
