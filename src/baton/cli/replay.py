"""`baton replay-check`: replay stored runs against the current code, before deploying it."""

from __future__ import annotations

import importlib
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from baton.cli import render
from baton.cli.options import AsJson, Limit
from baton.cli.store import fail, open_app
from baton.engine.app import App
from baton.engine.versioning import ReplayResult, replay_check

COLUMNS = ("run id", "workflow", "status", "outcome", "at step", "detail")
OUTCOME_STYLES = {"ok": "green", "diverged": "bold red", "error": "red", "unserved": "yellow"}


def load_app(spec: str) -> App:
    """`package.module:attribute` → the App it names (or a function returning one)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        fail(f"--app takes module:attribute (like myproject.workflows:app), got {spec!r}")
    sys.path.insert(0, str(Path.cwd()))
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # the user's code: report what failed, not a traceback
        fail(f"cannot import {module_name!r}: {type(exc).__name__}: {exc}")
    target: Any = getattr(module, attribute, None)
    if callable(target) and not isinstance(target, App):
        target = target()
    if not isinstance(target, App):
        fail(f"{spec} is not a baton.App (got {type(target).__name__})")
    return target


def result_row(result: ReplayResult) -> list[Any]:
    return [
        result.run_id,
        f"{result.workflow}@{result.version}",
        render.status(result.run_status),
        _outcome(result.outcome),
        result.seq if result.seq is not None else "-",
        result.message or f"{result.replayed} checkpoint(s) matched",
    ]


def _outcome(value: str) -> Text:
    return Text(value, style=OUTCOME_STYLES.get(value, ""))


def replay_check_command(
    ctx: typer.Context,
    app_spec: Annotated[
        str,
        typer.Option(
            "--app", metavar="MODULE:ATTR", help="Where the current code's baton.App lives."
        ),
    ],
    workflow: Annotated[
        str | None, typer.Option("--workflow", "-w", help="Only runs of this workflow.")
    ] = None,
    run_ids: Annotated[
        list[str] | None, typer.Option("--run", help="Only this run (repeatable).")
    ] = None,
    status: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Only runs in this status.")
    ] = None,
    limit: Limit = 1000,
    as_json: AsJson = False,
) -> None:
    """Replay the checkpoints of stored runs against the code, running no step and writing
    nothing; exit 1 if a run diverges or an unfinished run's version is not registered."""
    code = load_app(app_spec)
    with open_app(ctx.obj) as stored:
        if run_ids:
            runs = [stored.handle(r).info() for r in run_ids]
        else:
            try:
                runs = stored.runs(status or None, workflow, limit)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), param_hint="--status") from None
        results = replay_check(stored.store, code.registry, runs)
    code.shutdown()
    failed = [r for r in results if r.failed]
    if as_json:
        render.emit_json(
            {"checked": len(results), "failed": len(failed), "runs": [asdict(r) for r in results]}
        )
    else:
        render.show_table(
            COLUMNS, [result_row(r) for r in results], "no runs to check", keep=("run id",)
        )
        typer.echo(f"{len(results)} run(s) replayed; {len(failed)} problem(s)")
    if failed:
        raise typer.Exit(1)
