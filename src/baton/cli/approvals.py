"""`baton approvals`: human decisions runs are waiting for ("MAN mode")."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baton.cli import render
from baton.cli.backend import Doc, connect
from baton.cli.options import AsJson, Limit, RunId

app = typer.Typer(
    help="Approvals runs wait for: list them, approve or reject.", no_args_is_help=True
)

COLUMNS = ("run id", "workflow", "approval", "assignees", "requested", "deadline", "status")

Name = Annotated[str, typer.Argument(help="The approval's name.", show_default=False)]
By = Annotated[
    str | None, typer.Option("--by", help="Who decides (checked against the assignees).")
]
Comment = Annotated[str | None, typer.Option("--comment", "-m", help="A note kept with it.")]


STATUSES = ("PENDING", "APPROVED", "REJECTED", "TIMED_OUT")


def approval_row(appr: Doc) -> list[Any]:
    return [
        appr["run_id"],
        appr["workflow"],
        appr["name"],
        ", ".join(appr["assignees"]) or "anyone",
        render.stamp(appr["requested_at"]),
        render.stamp(appr["deadline_at"]) if appr["deadline_at"] is not None else "none",
        render.status(appr["status"]),
    ]


@app.command("ls")
def list_approvals(
    ctx: typer.Context,
    status: Annotated[
        str,
        typer.Option("--status", "-s", help="PENDING, APPROVED, REJECTED, TIMED_OUT or ALL."),
    ] = "PENDING",
    run_id: Annotated[str | None, typer.Option("--run", help="Only this run's.")] = None,
    limit: Limit = 100,
    as_json: AsJson = False,
) -> None:
    """List approvals (pending ones by default), oldest first."""
    wanted = None if status.upper() == "ALL" else status.upper()
    if wanted is not None and wanted not in STATUSES:
        known = ", ".join(sorted(STATUSES))
        message = f"unknown approval status {wanted!r}; one of {known} or ALL"
        raise typer.BadParameter(message, param_hint="--status")
    with connect(ctx) as backend:
        rows = backend.approvals(wanted, run_id, limit)
    if as_json:
        render.emit_json(rows)
    else:
        render.show_table(
            COLUMNS, [approval_row(a) for a in rows], "no approvals", keep=("run id",)
        )


def _decide(
    ctx: typer.Context,
    run_id: str,
    name: str,
    approved: bool,
    by: str | None,
    comment: str | None,
    as_json: bool,
) -> None:
    with connect(ctx) as backend:
        appr = backend.decide(run_id, name, approved, by, comment)
    if as_json:
        render.emit_json(appr)
        return
    who = f" by {appr['decided_by']}" if appr["decided_by"] else ""
    typer.echo(f"approval {name!r} of run {run_id}: {appr['status']}{who}")


@app.command("approve")
def approve(
    ctx: typer.Context,
    run_id: RunId,
    name: Name,
    by: By = None,
    comment: Comment = None,
    as_json: AsJson = False,
) -> None:
    """Approve a pending approval; the run resumes."""
    _decide(ctx, run_id, name, True, by, comment, as_json)


@app.command("reject")
def reject(
    ctx: typer.Context,
    run_id: RunId,
    name: Name,
    by: By = None,
    comment: Comment = None,
    as_json: AsJson = False,
) -> None:
    """Reject a pending approval; the run resumes with a rejected decision."""
    _decide(ctx, run_id, name, False, by, comment, as_json)
