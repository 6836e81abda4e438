"""`baton schedules`: list stored schedules, pause and resume them, start a run now."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.text import Text

from baton.cli import render
from baton.cli.documents import decode, run_document
from baton.cli.options import AsJson
from baton.cli.store import open_app
from baton.core.events import rfc3339
from baton.store.records import ScheduleRecord

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


def schedule_document(schedule: ScheduleRecord) -> dict[str, Any]:
    doc = asdict(schedule)
    doc["input"] = decode(schedule.input)
    for key, value in doc.items():
        if key.endswith("_at") and value is not None:
            doc[key] = rfc3339(value)
    return doc


def when(schedule: ScheduleRecord) -> str:
    return f"every {schedule.spec}s" if schedule.kind == "every" else schedule.spec


def schedule_row(schedule: ScheduleRecord) -> list[Any]:
    return [
        schedule.name,
        f"{schedule.workflow}@{schedule.version}",
        when(schedule),
        schedule.timezone,
        schedule.overlap,
        _state(schedule),
        render.timestamp(schedule.next_fire_at),
        render.timestamp(schedule.last_fire_at),
        schedule.queue,
    ]


@app.command("ls")
def list_schedules(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the stored schedules, by name."""
    with open_app(ctx.obj) as baton_app:
        schedules = baton_app.schedules()
    if as_json:
        render.emit_json([schedule_document(s) for s in schedules])
    else:
        rows = [schedule_row(s) for s in schedules]
        render.show_table(COLUMNS, rows, "no schedules", keep=("name",))


@app.command("pause")
def pause(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Stop firing a schedule (for every process on the store) until it is resumed."""
    with open_app(ctx.obj) as baton_app:
        schedule = baton_app.pause_schedule(name)
    _report(schedule, as_json)


@app.command("resume")
def resume(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Fire a paused schedule again from its next slot (passed slots do not fire)."""
    with open_app(ctx.obj) as baton_app:
        schedule = baton_app.resume_schedule(name)
    _report(schedule, as_json)


@app.command("trigger")
def trigger(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Start one run of a schedule now, with its stored workflow, version and input."""
    with open_app(ctx.obj) as baton_app:
        run = baton_app.trigger_schedule(name).info()
    if as_json:
        render.emit_json(run_document(run))
        return
    typer.echo(f"run {run.run_id} ({run.workflow}@{run.version}) enqueued by schedule {name!r}")
    typer.echo("a worker (any process running the app with this workflow registered) will run it")


def _state(schedule: ScheduleRecord) -> Text:
    return Text("paused", style="yellow") if schedule.paused else Text("active", style="green")


def _report(schedule: ScheduleRecord, as_json: bool) -> None:
    if as_json:
        render.emit_json(schedule_document(schedule))
        return
    nxt = "" if schedule.paused else f"; next fire {render.timestamp(schedule.next_fire_at)}"
    typer.echo(f"schedule {schedule.name!r} is {_state(schedule).plain}{nxt}")
