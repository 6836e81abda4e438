"""The `baton` command: `baton [--store URL] [--socket PATH] runs|dlq|events|nodes|serve ...`."""

from __future__ import annotations

from typing import Annotated

import typer

from baton.cli import (
    agents,
    approvals,
    dlq,
    events,
    migrate,
    nodes,
    replay,
    runs,
    schedules,
    serve,
)
from baton.cli.backend import SOCKET_KEY
from baton.cli.remote import DEFAULT_SOCKET
from baton.store import DEFAULT_LOCATION

app = typer.Typer(
    name="baton",
    help="Inspect and operate a Baton store: runs, the dead-letter queue, the event log, nodes.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.add_typer(runs.app, name="runs")
app.add_typer(dlq.app, name="dlq")
app.add_typer(events.app, name="events")
app.add_typer(schedules.app, name="schedules")
app.add_typer(approvals.app, name="approvals")
app.add_typer(nodes.app, name="nodes")
app.add_typer(agents.app, name="agents")
app.add_typer(migrate.app, name="store")
app.command("replay-check")(replay.replay_check_command)
app.command("serve")(serve.serve_command)


@app.callback()
def root(
    ctx: typer.Context,
    store: Annotated[
        str,
        typer.Option(
            "--store",
            envvar="BATON_STORE",
            metavar="PATH",
            help="The store: a file path, sqlite:///path or postgresql://… It must exist.",
        ),
    ] = DEFAULT_LOCATION,
    socket: Annotated[
        str,
        typer.Option(
            "--socket",
            envvar="BATON_SOCKET",
            metavar="PATH",
            help="A running node's UNIX socket: commands go through the node when it answers "
            "there (with BATON_TOKEN as their token), else to the store.",
        ),
    ] = DEFAULT_SOCKET,
) -> None:
    ctx.obj = store
    ctx.meta[SOCKET_KEY] = socket


def main() -> None:
    app()
