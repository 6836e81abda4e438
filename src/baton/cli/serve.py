"""`baton serve`: run a node (API on TCP and a private UNIX socket, workers and scheduler,
outbound webhooks) for the App a configuration names, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from click.core import ParameterSource

from baton.core.errors import BatonError, ConfigError
from baton.engine.app import App
from baton.node.config import load_config
from baton.node.http import ListenError
from baton.node.node import Node
from baton.observability.logging import configure_logging
from baton.server.api import create_api

DEFAULT_CONFIG = "baton.yaml"


def build_api(node: Node) -> Any:
    """The control plane for `node`: its tokens, body limit and inbound webhooks."""
    server = node.config.server
    return create_api(
        node.app,
        tokens=server.tokens,
        max_body=server.max_body,
        node=node,
        hooks=dict(node.config.webhooks.inbound),
    )


def services() -> dict[str, Any]:
    """The services a node hosts beside its API and workers, each as an agent of that name:
    the outbound webhook deliverer (`baton.server.webhooks.deliverer`), when this build has it."""
    try:
        found = importlib.util.find_spec("baton.server.webhooks.deliverer")
    except ModuleNotFoundError:
        found = None
    if found is None:
        return {}
    from baton.server.webhooks.deliverer import WebhookDeliverer

    def deliverer(app: App) -> Any:
        return WebhookDeliverer(app)

    return {"webhooks": deliverer}


def serve_command(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help=f"The node's configuration; default ./{DEFAULT_CONFIG} if there is one.",
        ),
    ] = None,
    app: Annotated[
        str | None, typer.Option("--app", metavar="MODULE:ATTR", help="The App to serve.")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store", metavar="URL", help="The store (a path, sqlite:/// or postgresql://)."
        ),
    ] = None,
    host: Annotated[str | None, typer.Option("--host", help="The HTTP address.")] = None,
    port: Annotated[
        int | None, typer.Option("--port", help="The HTTP port (0: any free one).")
    ] = None,
    socket: Annotated[
        str | None, typer.Option("--socket", metavar="PATH", help="The node's UNIX socket.")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", metavar="NAME", help="The environment overlay to apply.")
    ] = None,
) -> None:
    """Run a node: the API, the workers and the scheduler of an App, until SIGTERM or Ctrl-C.

    Flags win over BATON_* variables, which win over the file; see docs/node.md."""
    configure_logging(os.environ.get("BATON_LOG_LEVEL") or "INFO")
    if config is None and Path(DEFAULT_CONFIG).is_file():
        config = Path(DEFAULT_CONFIG)
    overrides = {
        "app": app,
        "store": store or _given(ctx, "store"),
        "server.host": host,
        "server.port": port,
        "server.socket": socket or _given(ctx, "socket"),
        "environment": env,
    }
    try:
        node = Node(load_config(config, overrides=overrides), api=build_api, services=services())
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    except BatonError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        code = node.run()
    except (ListenError, BatonError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


def _given(ctx: typer.Context, name: str) -> str | None:
    """`baton --store X serve`: the root option's value, when given on the command line."""
    parent = ctx.parent
    if parent is None or parent.get_parameter_source(name) != ParameterSource.COMMANDLINE:
        return None
    return parent.params.get(name)
