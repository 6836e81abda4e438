"""Comparing two runs step by step (`baton runs diff A B`), as a document and as tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.text import Text

from baton.cli import render
from baton.cli.documents import decode
from baton.server.views import run_view, step_view
from baton.store.records import RunRecord, StepRecord

MARK = "≠"
CELL = 60  # characters of a value shown in a table cell; --json shows whole values
STEP_COLUMNS = ("seq", "step A", "step B", "status A", "status B", "output A", "output B", "diff")
RUN_COLUMNS = ("", "A", "B", "diff")


def diff_document(
    a: RunRecord, steps_a: list[StepRecord], b: RunRecord, steps_b: list[StepRecord]
) -> dict[str, Any]:
    """Both runs, their inputs, outputs and errors, and their steps paired by seq.

    Two steps are the same when their name, status, output and error (type and message)
    are; `first_difference` is the lowest seq where they are not, or None.
    """
    by_a = {s.seq: s for s in steps_a}
    by_b = {s.seq: s for s in steps_b}
    steps = []
    for seq in sorted(by_a.keys() | by_b.keys()):
        sa, sb = by_a.get(seq), by_b.get(seq)
        steps.append(
            {
                "seq": seq,
                "same": sa is not None and sb is not None and _step_key(sa) == _step_key(sb),
                "a": None if sa is None else step_view(sa).model_dump(mode="json"),
                "b": None if sb is None else step_view(sb).model_dump(mode="json"),
            }
        )
    return {
        "a": run_view(a).model_dump(mode="json"),
        "b": run_view(b).model_dump(mode="json"),
        "input": _pair(decode(a.input), decode(b.input)),
        "output": _pair(decode(a.output), decode(b.output)),
        "error": _pair(_error_key(a.error), _error_key(b.error)),
        "steps": steps,
        "first_difference": next((s["seq"] for s in steps if not s["same"]), None),
    }


def show_diff(doc: dict[str, Any]) -> None:
    out = render.console()
    a, b = doc["a"], doc["b"]
    runs = [
        _run_row("run id", a["run_id"], b["run_id"], mark=False),
        _run_row("workflow", f"{a['workflow']}@{a['version']}", f"{b['workflow']}@{b['version']}"),
        [
            "status",
            render.status(a["status"]),
            render.status(b["status"]),
            _mark(a["status"] != b["status"]),
        ],
        _run_row("forked from", a["forked_from"] or "-", b["forked_from"] or "-", mark=False),
        _value_row("input", doc["input"], _short),
        _value_row("output", doc["output"], _short),
        _value_row("error", doc["error"], _error_text),
    ]
    out.print(render.table(RUN_COLUMNS, runs, keep=("A", "B")))
    out.print(Text(f"\nsteps ({len(doc['steps'])})", style="bold"))
    rows = [_step_row(s) for s in doc["steps"]]
    render.show_table(STEP_COLUMNS, rows, "no steps recorded in either run")
    first = doc["first_difference"]
    if first is None:
        out.print(Text("\nthe steps are the same", style="green"))
    else:
        out.print(Text(f"\nthe steps differ from step {first} on", style="yellow"))


def _pair(a: Any, b: Any) -> dict[str, Any]:
    return {"a": a, "b": b, "same": a == b}


def _error_key(text: str | None) -> Any:
    """What matters of an error for a comparison: not its traceback or timings."""
    error = decode(text)
    if isinstance(error, dict):
        return {"type": error.get("type"), "message": error.get("message")}
    return error


def _step_key(step: StepRecord) -> tuple[Any, ...]:
    return (step.name, step.status, decode(step.output), _error_key(step.error))


def _mark(differs: bool) -> Text:
    return Text(MARK if differs else "", style="bold yellow")


def _run_row(name: str, a: str, b: str, mark: bool = True) -> list[Any]:
    return [name, a, b, _mark(mark and a != b)]


def _value_row(name: str, pair: dict[str, Any], show: Callable[[Any], str]) -> list[Any]:
    a, b = (("-" if v is None else show(v)) for v in (pair["a"], pair["b"]))
    return [name, a, b, _mark(not pair["same"])]


def _step_row(pair: dict[str, Any]) -> list[Any]:
    a, b = pair["a"], pair["b"]
    return [
        pair["seq"],
        a["name"] if a else "-",
        b["name"] if b else "-",
        render.status(a["status"]) if a else "-",
        render.status(b["status"]) if b else "-",
        _step_value(a),
        _step_value(b),
        _mark(not pair["same"]),
    ]


def _step_value(step: dict[str, Any] | None) -> str:
    if step is None:
        return "-"
    if step["error"] is not None:
        return _error_text(step["error"])
    return _short(step["output"])


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        return f"{error.get('type') or 'Error'}: {error.get('message') or ''}"
    return str(error)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= CELL else text[: CELL - 1] + "…"
