"""Output: rich tables for people, one JSON document for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Piped output is for grep and files: do not squeeze tables to a guessed terminal width.
PIPE_WIDTH = 240

STATUS_STYLES = {
    "SUCCEEDED": "green",
    "FAILED": "red",
    "DEAD": "bold red",
    "RETRYING": "yellow",
    "WAITING": "yellow",
    "COMPENSATING": "yellow",
    "COMPENSATED": "magenta",
    "CANCELLED": "dim",
    "RUNNING": "cyan",
    "ENQUEUED": "blue",
    "PENDING": "yellow",
    "APPROVED": "green",
    "REJECTED": "red",
    "TIMED_OUT": "dim",
}


def console() -> Console:
    tty = getattr(sys.stdout, "isatty", None)
    return Console(width=None if tty is not None and tty() else PIPE_WIDTH, highlight=False)


def emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def timestamp(ts: float | None) -> str:
    """UTC, to the second: 2025-01-31T12:00:00Z."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    seconds = max(end - start, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def parse_time(text: str | None) -> float | None:
    """An RFC 3339 time (as the API and `--json` give them) as epoch seconds."""
    return None if text is None else datetime.fromisoformat(text).timestamp()


def stamp(text: str | None) -> str:
    """An RFC 3339 time to the second, as `timestamp` shows it."""
    return timestamp(parse_time(text))


def span(start: str | None, end: str | None) -> str:
    """The duration between two RFC 3339 times, as `duration` shows it."""
    return duration(parse_time(start), parse_time(end))


def error_text(error: Any) -> str:
    """`Type: message` from a decoded error document."""
    if not error:
        return ""
    if not isinstance(error, dict):
        return str(error)
    return f"{error.get('type', 'Error')}: {error.get('message', '')}"


def status(value: str) -> Text:
    return Text(value, style=STATUS_STYLES.get(value, ""))


def table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], keep: Collection[str] = ()
) -> Table:
    """A table of plain-text cells (never markup). Cells too long for the terminal wrap,
    except in the `keep` columns (ids people copy)."""
    cells = [[c if isinstance(c, Text) else Text(str(c)) for c in row] for row in rows]
    out = Table(header_style="bold", show_edge=False, pad_edge=False)
    for i, name in enumerate(columns):
        if name in keep:
            widest = max((cell_len(row[i].plain) for row in cells), default=0)
            out.add_column(name, no_wrap=True, min_width=max(widest, len(name)))
        else:
            out.add_column(name, overflow="fold")
    for row in cells:
        out.add_row(*row)
    return out


def fields(pairs: Iterable[tuple[str, Any]]) -> Table:
    """A two-column grid of names and values; pairs whose value is None are left out."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")
    for name, value in pairs:
        if value is not None:
            grid.add_row(name, value if isinstance(value, Text) else Text(str(value)))
    return grid


def show_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], empty: str, keep: Collection[str] = ()
) -> None:
    out = console()
    if rows:
        out.print(table(columns, rows, keep))
    else:
        out.print(Text(empty, style="dim"))
