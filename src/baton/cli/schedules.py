"""`baton schedules`: list stored schedules, pause and resume them, start a run now."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.text import Text

from baton.cli import render
from baton.cli.backend import Doc, connect
from baton.cli.options import AsJson

app = typer.Typer(
    help="Schedules: list them, pause or resume one, trigger a run now.", no_args_is_help=True
)

COLUMNS = (
    "name",
    "workflow",
    "when",
    "time zone",
    "overlap",
    "state",
    "next fire",
    "last fire",
    "queue",
)

Name = Annotated[str, typer.Argument(help="The schedule's name.", show_default=False)]


def when(schedule: Doc) -> str:
    return f"every {schedule['spec']}s" if schedule["kind"] == "every" else schedule["spec"]


def schedule_row(schedule: Doc) -> list[Any]:
    return [
        schedule["name"],
        f"{schedule['workflow']}@{schedule['version']}",
        when(schedule),
        schedule["timezone"],
        schedule["overlap"],
        _state(schedule),
        render.stamp(schedule["next_fire_at"]),
        render.stamp(schedule["last_fire_at"]),
        schedule["queue"],
    ]


@app.command("ls")
def list_schedules(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the stored schedules, by name."""
    with connect(ctx) as backend:
        schedules = backend.schedules()
    if as_json:
        render.emit_json(schedules)
    else:
        rows = [schedule_row(s) for s in schedules]
        render.show_table(COLUMNS, rows, "no schedules", keep=("name",))


@app.command("pause")
def pause(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Stop firing a schedule (for every process on the store) until it is resumed."""
    with connect(ctx) as backend:
        schedule = backend.schedule(name, "pause")
    _report(schedule, as_json)


@app.command("resume")
def resume(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Fire a paused schedule again from its next slot (passed slots do not fire)."""
    with connect(ctx) as backend:
        schedule = backend.schedule(name, "resume")
    _report(schedule, as_json)


@app.command("trigger")
def trigger(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Start one run of a schedule now, with its stored workflow, version and input."""
    with connect(ctx) as backend:
        run = backend.trigger(name)
    if as_json:
        render.emit_json(run)
        return
    label = f"{run['workflow']}@{run['version']}"
    typer.echo(f"run {run['run_id']} ({label}) enqueued by schedule {name!r}")
    typer.echo("a worker (any process running the app with this workflow registered) will run it")


def _state(schedule: Doc) -> Text:
    return Text("paused", style="yellow") if schedule["paused"] else Text("active", style="green")


def _report(schedule: Doc, as_json: bool) -> None:
    if as_json:
        render.emit_json(schedule)
        return
    nxt = "" if schedule["paused"] else f"; next fire {render.stamp(schedule['next_fire_at'])}"
    typer.echo(f"schedule {schedule['name']!r} is {_state(schedule).plain}{nxt}")
