"""`baton approvals`: human decisions runs are waiting for ("MAN mode")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from baton.cli import render
from baton.cli.options import AsJson, Limit, RunId
from baton.cli.store import open_app
from baton.store.records import ApprovalRecord

app = typer.Typer(
    help="Approvals runs wait for: list them, approve or reject.", no_args_is_help=True
)

COLUMNS = ("run id", "workflow", "approval", "assignees", "requested", "deadline", "status")

Name = Annotated[str, typer.Argument(help="The approval's name.", show_default=False)]
By = Annotated[
    str | None, typer.Option("--by", help="Who decides (checked against the assignees).")
]
Comment = Annotated[str | None, typer.Option("--comment", "-m", help="A note kept with it.")]


def approval_document(appr: ApprovalRecord) -> dict[str, Any]:
    doc = asdict(appr)
    doc["on_timeout"] = {k: v for k, v in appr.on_timeout.items() if k != "error"}
    return doc


def approval_row(appr: ApprovalRecord) -> list[Any]:
    return [
        appr.run_id,
        appr.workflow,
        appr.name,
        ", ".join(appr.assignees) or "anyone",
        render.timestamp(appr.requested_at),
        render.timestamp(appr.deadline_at) if appr.deadline_at is not None else "none",
        render.status(appr.status),
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
    wanted = None if status.upper() == "ALL" else status
    with open_app(ctx.obj) as baton_app:
        try:
            rows = baton_app.approvals(wanted, run_id, limit)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--status") from None
    if as_json:
        render.emit_json([approval_document(a) for a in rows])
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
    with open_app(ctx.obj) as baton_app:
        appr = baton_app.decide(run_id, name, approved, by, comment)
    if as_json:
        render.emit_json(approval_document(appr))
        return
    who = f" by {appr.decided_by}" if appr.decided_by else ""
    typer.echo(f"approval {name!r} of run {run_id}: {appr.status}{who}")


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
