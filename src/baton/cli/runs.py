"""`baton runs`: list runs, show one with its steps, cancel one."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.text import Text

from baton.cli import compensations, diff, render
from baton.cli.backend import Doc, connect
from baton.cli.options import AsJson, Limit, RunId
from baton.cli.store import fail, open_app
from baton.core.errors import RunNotFound
from baton.store.records import RunStatus

app = typer.Typer(help="List, inspect, compare and cancel runs.", no_args_is_help=True)

RUN_COLUMNS = (
    "run id",
    "workflow",
    "status",
    "queue",
    "priority",
    "attempt",
    "created",
    "duration",
    "correlation id",
)
STEP_COLUMNS = ("seq", "name", "status", "attempts", "started", "duration", "error")
KEEP = ("run id",)  # never wrapped: an id to copy


def parse_statuses(values: list[str]) -> list[str]:
    """`dead`, `DEAD,failed`, ... as RunStatus values; exit 1 on an unknown one."""
    wanted = []
    for value in values:
        for name in filter(None, (part.strip().upper() for part in value.split(","))):
            if name not in RunStatus.__members__:
                valid = ", ".join(RunStatus.__members__)
                fail(f"unknown status {name!r}; valid statuses: {valid}")
            wanted.append(RunStatus[name].value)
    return wanted


def run_row(run: Doc) -> list[Any]:
    return [
        run["run_id"],
        f"{run['workflow']}@{run['version']}",
        render.status(run["status"]),
        run["queue"],
        run["priority"],
        run["attempt"],
        render.stamp(run["created_at"]),
        render.span(run["started_at"], run["finished_at"]),
        run["correlation_id"],
    ]


@app.command("ls")
def list_runs(
    ctx: typer.Context,
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help="Only runs with this status (repeatable, any case)."),
    ] = None,
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    limit: Limit = 100,
    as_json: AsJson = False,
) -> None:
    """List runs, newest first."""
    statuses = parse_statuses(status or [])
    with connect(ctx) as backend:
        runs = backend.runs(statuses or None, workflow, limit)
    if as_json:
        render.emit_json(runs)
    else:
        rows = [run_row(r) for r in runs]
        render.show_table(RUN_COLUMNS, rows, "no runs", keep=KEEP)


@app.command("show")
def show_run(ctx: typer.Context, run_id: RunId, as_json: AsJson = False) -> None:
    """Show a run: its fields, input, output, error, steps and compensation log."""
    with connect(ctx) as backend:
        run = backend.run(run_id)
        steps, undo = compensations.split(backend.steps(run_id))
    if as_json:
        doc: dict[str, Any] = {"run": run, "steps": steps}
        if compensations.has_log(run, undo):
            doc["compensations"] = compensations.documents(steps, undo)
        render.emit_json(doc)
    else:
        _show(run, steps)
        compensations.show(run, steps, undo)


@app.command("diff")
def diff_runs(
    ctx: typer.Context,
    run_a: Annotated[str, typer.Argument(help="The first run's id.", show_default=False)],
    run_b: Annotated[str, typer.Argument(help="The second run's id.", show_default=False)],
    as_json: AsJson = False,
) -> None:
    """Compare two runs side by side: inputs, outputs and steps by seq, differences marked."""
    with open_app(ctx.obj) as baton_app:
        a, b = baton_app.get_run(run_a), baton_app.get_run(run_b)
        if a is None or b is None:
            raise RunNotFound(run_a if a is None else run_b)
        doc = diff.diff_document(a, baton_app.steps(run_a), b, baton_app.steps(run_b))
    if as_json:
        render.emit_json(doc)
    else:
        diff.show_diff(doc)


@app.command("cancel")
def cancel_run(ctx: typer.Context, run_id: RunId, as_json: AsJson = False) -> None:
    """Cancel a run that has not ended (a step already running finishes, unrecorded)."""
    with connect(ctx) as backend:
        run = backend.cancel(run_id)
    if as_json:
        render.emit_json(run)
    else:
        typer.echo(f"run {run['run_id']} ({run['workflow']}@{run['version']}) is {run['status']}")


def _show(run: Doc, steps: list[Doc]) -> None:
    out = render.console()
    out.print(render.fields(_fields(run)))
    for title in ("input", "output"):
        # a workflow that returned None has the output null: shown as such once it succeeded
        if run[title] is not None or (title == "output" and run["status"] == "SUCCEEDED"):
            out.print(Text(f"\n{title}", style="bold"))
            out.print(Text(json.dumps(run[title], indent=2, ensure_ascii=False)))
    if run["error"] is not None:
        error = run["error"]
        error = error if isinstance(error, dict) else {"message": error}
        out.print(Text("\nerror", style="bold red"))
        out.print(render.fields((k, error.get(k)) for k in ("type", "message", "step", "attempts")))
        if error.get("traceback"):
            out.print(Text(str(error["traceback"]).rstrip(), style="dim"))
    out.print(Text(f"\nsteps ({len(steps)})", style="bold"))
    rows = [_step_row(s) for s in steps]
    render.show_table(STEP_COLUMNS, rows, "no steps recorded", keep=KEEP)


def _fields(run: Doc) -> list[tuple[str, Any]]:
    fields: list[tuple[str, Any]] = [
        ("run id", run["run_id"]),
        ("workflow", f"{run['workflow']}@{run['version']}"),
        ("status", render.status(run["status"])),
        ("queue", run["queue"]),
        ("priority", run["priority"]),
        ("attempt", run["attempt"]),
        ("correlation id", run["correlation_id"]),
        ("idempotency key", run["idempotency_key"]),
        ("parent run", run["parent_run_id"]),
        ("owner", run["owner"]),
        ("created", render.stamp(run["created_at"])),
        ("started", _unless_none(run["started_at"], render.stamp)),
        ("finished", _unless_none(run["finished_at"], render.stamp)),
        (
            "duration",
            _unless_none(run["finished_at"], lambda end: render.span(run["started_at"], end)),
        ),
        ("deadline", _unless_none(run["deadline_at"], render.stamp)),
    ]
    if run["status"] in (RunStatus.ENQUEUED, RunStatus.COMPENSATING):
        fields.append(("available at", render.stamp(run["available_at"])))
    return fields


def _unless_none(value: Any, show: Callable[[Any], str]) -> str | None:
    return None if value is None else show(value)


def _step_row(step: Doc) -> list[Any]:
    return [
        step["seq"],
        step["name"],
        render.status(step["status"]),
        step["attempts"],
        render.stamp(step["started_at"]),
        render.span(step["started_at"], step["finished_at"]),
        render.error_text(step["error"]),
    ]
