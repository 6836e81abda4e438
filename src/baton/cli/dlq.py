"""`baton dlq`: the dead-letter queue (runs whose retries ran out) and redriving them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baton.cli import render
from baton.cli.backend import Doc, connect
from baton.cli.options import AsJson, Limit, RunId
from baton.store.records import RunStatus

app = typer.Typer(help="The dead-letter queue: list DEAD runs, redrive them.", no_args_is_help=True)

COLUMNS = ("run id", "workflow", "failed step", "error", "attempts", "finished")


def dead_row(run: Doc) -> list[Any]:
    error = run["error"] if isinstance(run["error"], dict) else {}
    return [
        run["run_id"],
        f"{run['workflow']}@{run['version']}",
        error.get("step") or "-",
        render.error_text(run["error"]),
        error.get("attempts") or run["attempt"],
        render.stamp(run["finished_at"]),
    ]


@app.command("ls")
def list_dead(
    ctx: typer.Context,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    limit: Limit = 100,
    as_json: AsJson = False,
) -> None:
    """List DEAD runs, newest first."""
    with connect(ctx) as backend:
        runs = backend.runs([RunStatus.DEAD], workflow, limit)
    if as_json:
        render.emit_json(runs)
    else:
        rows = [dead_row(r) for r in runs]
        render.show_table(COLUMNS, rows, "the dead-letter queue is empty", keep=("run id",))


@app.command("redrive")
def redrive(ctx: typer.Context, run_id: RunId, as_json: AsJson = False) -> None:
    """Send a DEAD (or FAILED) run back to its queue; it resumes at its failed step."""
    with connect(ctx) as backend:
        run = backend.redrive(run_id)
    if as_json:
        render.emit_json(run)
        return
    name = f"{run['workflow']}@{run['version']}"
    typer.echo(f"run {run['run_id']} ({name}) is back in queue {run['queue']!r}")
    typer.echo(
        "a worker (any process running the app with this workflow registered) "
        "will resume it at its failed step"
    )
