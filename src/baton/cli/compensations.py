"""The compensation log of a run, for `baton runs show`: each compensation, the step it undoes,
its status, attempts, timings and error. A compensation is checkpoint `-seq` of kind
'compensation', where `seq` is the step it undoes."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from baton.cli import render
from baton.cli.backend import Doc
from baton.store.records import RunStatus

KIND = "compensation"
COLUMNS = ("seq", "compensation", "undoes", "status", "attempts", "started", "duration", "error")


def split(steps: list[Doc]) -> tuple[list[Doc], list[Doc]]:
    """(forward checkpoints, compensations in the order they ran: newest step undone first)."""
    forward = [s for s in steps if s["kind"] != KIND]
    undo = sorted((s for s in steps if s["kind"] == KIND), key=lambda s: s["seq"])
    return forward, undo


def has_log(run: Doc, undo: list[Doc]) -> bool:
    """Whether the run has a compensation log to show (or is compensating)."""
    return bool(undo) or run["status"] == RunStatus.COMPENSATING


def documents(forward: list[Doc], undo: list[Doc]) -> list[dict[str, Any]]:
    names = {s["seq"]: s["name"] for s in forward}
    return [
        {**mark, "undoes": {"seq": -mark["seq"], "step": names.get(-mark["seq"])}} for mark in undo
    ]


def show(run: Doc, forward: list[Doc], undo: list[Doc]) -> None:
    """Print the log, if the run has one (or is compensating)."""
    if not has_log(run, undo):
        return
    out = render.console()
    out.print(Text(f"\ncompensations ({len(undo)})", style="bold"))
    cause = _cause(run)
    if cause:
        out.print(render.fields([("started by", cause)]))
    names = {s["seq"]: s["name"] for s in forward}
    rows = [_row(mark, names.get(-mark["seq"])) for mark in undo]
    render.show_table(COLUMNS, rows, "none recorded yet")


def _row(mark: Doc, undoes: str | None) -> list[Any]:
    return [
        mark["seq"],
        mark["name"],
        f"{undoes or '?'} (#{-mark['seq']})",
        render.status(mark["status"]),
        mark["attempts"],
        render.stamp(mark["started_at"]),
        render.span(mark["started_at"], mark["finished_at"]),
        render.error_text(mark["error"]),
    ]


def _cause(run: Doc) -> str | None:
    """`Type: message` of the error that started the compensation."""
    doc = run["error"]
    if not isinstance(doc, dict):
        return None
    doc = doc.get("cause", doc) if doc.get("compensation") else doc
    if not isinstance(doc, dict):
        return None
    return f"{doc.get('type', 'Error')}: {doc.get('message', '')}"
