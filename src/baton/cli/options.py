"""Options and arguments several commands share."""

from __future__ import annotations

from typing import Annotated

import typer

AsJson = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout instead of a table.")
]
Limit = Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most N rows.")]
RunId = Annotated[str, typer.Argument(help="The run's id.", show_default=False)]
