"""`baton store migrate --from URL --to URL`: move a whole store to another backend."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Annotated

import typer

from baton.cli import render
from baton.cli.options import AsJson
from baton.cli.store import fail, sqlite_path
from baton.core.errors import BatonError
from baton.store import open_store
from baton.store.migrate import migrate
from baton.store.sql.base import SQLStore

app = typer.Typer(help="The store itself: move it to another backend.", no_args_is_help=True)


@app.command("migrate")
def migrate_command(
    source: Annotated[
        str,
        typer.Option("--from", metavar="URL", help="The store to copy from (it is only read)."),
    ],
    target: Annotated[
        str,
        typer.Option("--to", metavar="URL", help="An empty store to copy into (created if new)."),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Copy even while workers heartbeat on the source.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Copy every run (in any state, leases reset), checkpoint, signal, approval, queue,
    schedule, payload and event into an empty store, in one transaction."""
    path = sqlite_path(source)
    if path is not None and not path.is_file():
        fail(f"no Baton store at {path}")
    opened: list[SQLStore] = []
    try:
        for location in (source, target):
            store = open_store(location)
            if not isinstance(store, SQLStore):
                fail(f"cannot migrate {location}: not a SQL store")
            opened.append(store)
        report = migrate(opened[0], opened[1], time.time(), force=force)
    except BatonError as exc:
        fail(str(exc))
    finally:
        for store in opened:
            store.close()
    if as_json:
        render.emit_json(asdict(report))
        return
    rows = [[table, n] for table, n in report.rows.items()]
    render.show_table(("table", "rows copied"), rows, "nothing to copy")
    typer.echo(
        f"migrated {report.source} -> {report.target} in {report.seconds:.2f}s; "
        f"{report.leases_reset} lease(s) reset"
    )
