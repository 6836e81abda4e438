"""`baton agents`: look at and steer a running orchestrator over its control socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any

import typer
from click.core import ParameterSource as Source
from rich.text import Text

from baton.agents.client import ControlClient
from baton.agents.config import DEFAULT_SOCKET
from baton.agents.errors import ControlError, ControlUnavailable
from baton.cli import render
from baton.cli.backend import NodeAgents, find_node
from baton.cli.options import AsJson
from baton.cli.store import fail

app = typer.Typer(
    help="Supervised agents: list, inspect, start, stop and restart them on a running "
    "orchestrator (a node's, through its socket, else over the control socket).",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The agent's name.", show_default=False)]
PS_COLUMNS = (
    "name",
    "state",
    "execution",
    "pid",
    "gen",
    "restarts",
    "uptime",
    "heartbeat",
    "reason",
)
STATS_COLUMNS = ("name", "execution", "pid", "cpu %", "cpu s", "rss", "threads", "uptime")
HISTORY_COLUMNS = ("seq", "time", "event", "agent", "details")
STATE_STYLES = {
    "RUNNING": "green",
    "STARTING": "cyan",
    "STOPPING": "yellow",
    "BACKOFF": "yellow",
    "WAITING": "blue",
    "QUEUED": "blue",
    "COMPLETED": "green",
    "FAILED": "red",
    "STUCK": "bold red",
    "SKIPPED": "dim",
    "STOPPED": "dim",
}


@app.callback()
def agents(
    ctx: typer.Context,
    socket: Annotated[
        str,
        typer.Option(
            "--socket",
            envvar="BATON_AGENTS_SOCKET",
            metavar="PATH",
            help="The orchestrator's control socket (Orchestrator.Config.control_socket).",
        ),
    ] = DEFAULT_SOCKET,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds to wait for an answer.")
    ] = 60.0,
) -> None:
    # a node answering on its socket hosts the agents, unless a control socket was named
    named = ctx.get_parameter_source("socket") in (Source.COMMANDLINE, Source.ENVIRONMENT)
    node = None if named else find_node(ctx)
    if node is not None:
        ctx.call_on_close(node.close)
        ctx.obj = NodeAgents(node, timeout)
        return
    ctx.obj = ControlClient(socket, timeout=timeout)


def _ask(ctx: typer.Context, call: Callable[[ControlClient], Any]) -> Any:
    try:
        return call(ctx.obj)
    except ControlError as exc:
        fail(exc.message if exc.type == "UnknownAgent" else f"{exc.type}: {exc.message}")
    except ControlUnavailable as exc:
        fail(str(exc))


def _state(value: str | None) -> Text:
    return Text(value or "-", style=STATE_STYLES.get(value or "", ""))


def _seconds(value: float | None) -> str:
    return "-" if value is None else render.duration(0.0, value)


@app.command("ps")
def ps(ctx: typer.Context, as_json: AsJson = False) -> None:
    """List the agents with their state, process, generation and restarts."""
    rows = _ask(ctx, lambda c: c.request("ps"))
    if as_json:
        render.emit_json(rows)
        return
    render.show_table(
        PS_COLUMNS,
        [
            [
                r["name"],
                _state(r["state"]),
                r["execution"],
                r["pid"] or "-",
                r["generation"],
                r["restarts"],
                _seconds(r["uptime"]),
                _seconds(r["heartbeat_age"]),
                r["reason"] or "",
            ]
            for r in rows
        ],
        "no agents",
        keep=("name",),
    )


@app.command("status")
def status(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
    """Everything about one agent: config (secrets masked), policy, last exit and error."""
    doc = _ask(ctx, lambda c: c.request("status", name=name))
    if as_json:
        render.emit_json(doc)
        return
    _show_status(doc)


def _show_status(doc: dict[str, Any]) -> None:
    instance = doc.get("instance") or {}
    last_exit = doc.get("last_exit") or {}
    error = doc.get("last_error") or {}
    policy = doc["restart_policy"]
    exit_text = None
    if last_exit:
        how = (
            f"signal {last_exit['signal_name']}"
            if last_exit.get("signal")
            else f"exit code {last_exit.get('exit_code')}"
        )
        exit_text = f"{last_exit.get('outcome')} ({how}), generation {last_exit.get('generation')}"
    out = render.console()
    out.print(
        render.fields(
            [
                ("name", doc["name"]),
                ("state", _state(doc["state"])),
                ("reason", doc.get("reason")),
                ("class", doc["class"]),
                ("execution", doc["execution"]),
                ("pid", doc.get("pid")),
                ("generation", doc["generation"]),
                ("started", instance.get("started_at")),
                ("uptime", _seconds(doc.get("uptime")) if doc.get("uptime") else None),
                ("heartbeat age", _seconds(doc.get("heartbeat_age"))),
                ("depends on", ", ".join(f"{d['name']} ({d['until']})" for d in doc["depends_on"])),
                (
                    "restart",
                    f"{policy['when']}, at most {policy['max_restarts']} in {policy['window']:g}s"
                    f" ({doc['restarts']} so far)",
                ),
                ("stuck threads", len(doc["stuck"]) or None),
                ("last exit", exit_text),
                ("last error", f"{error.get('type')}: {error.get('message')}" if error else None),
                ("config", json.dumps(doc["config"], ensure_ascii=False)),
            ]
        )
    )


def _control(op: str, help_text: str) -> None:
    def command(ctx: typer.Context, name: Name, as_json: AsJson = False) -> None:
        result = _ask(ctx, lambda c: c.request(op, name=name))
        if as_json:
            render.emit_json(result)
            return
        doc = result["status"]
        typer.echo(f"{name}: {result['state']} (generation {doc['generation']})")

    command.__doc__ = help_text
    app.command(op)(command)


_control("start", "Start an agent that is not running (it waits for dependencies and a slot).")
_control("stop", "Stop an agent: cooperatively, then SIGTERM/SIGKILL for a process agent.")
_control("restart", "Stop an agent and start it again (not counted against its policy).")


@app.command("history")
def history(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option("--name", help="Only this agent's events.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="The newest N.")] = 50,
    as_json: AsJson = False,
) -> None:
    """The latest events: starts, readiness, errors, restarts, terminations."""
    fields: dict[str, Any] = {"limit": limit}
    if name is not None:
        fields["name"] = name
    events = _ask(ctx, lambda c: c.request("history", **fields))
    if as_json:
        render.emit_json(events)
        return
    render.show_table(
        HISTORY_COLUMNS,
        [[e["seq"], e["time"], e["type"], e["agent"] or "", _summary(e["data"])] for e in events],
        "no events",
    )


def _summary(data: dict[str, Any]) -> str:
    shown = {k: v for k, v in data.items() if k != "traceback" and v is not None}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


@app.command("stats")
def stats(ctx: typer.Context, as_json: AsJson = False) -> None:
    """CPU, memory, threads and uptime of each running agent.

    Thread agents share the orchestrator's process: they show its RSS and thread count,
    and their own thread's CPU time."""
    rows = _ask(ctx, lambda c: c.request("stats"))
    if as_json:
        render.emit_json(rows)
        return
    render.show_table(
        STATS_COLUMNS,
        [
            [
                r["name"],
                r["execution"],
                r["pid"],
                "-" if r.get("cpu_percent") is None else f"{r['cpu_percent']:.1f}",
                "-" if r.get("cpu_seconds") is None else f"{r['cpu_seconds']:.2f}",
                "-" if r.get("rss") is None else f"{r['rss'] / 2**20:.1f} MiB",
                r.get("threads") if r.get("threads") is not None else "-",
                _seconds(r["uptime"]),
            ]
            for r in rows
        ],
        "no running agents",
        keep=("name",),
    )


@app.command("shutdown")
def shutdown(
    ctx: typer.Context,
    grace: Annotated[
        float | None,
        typer.Option("--grace", min=0.1, help="Seconds each agent gets to stop by itself."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Stop every agent and end the orchestrator; waits until it has."""
    result = _ask(ctx, lambda c: c.shutdown(grace))
    if as_json:
        render.emit_json(result)
        return
    states = (result or {}).get("states")
    if not states:
        typer.echo("orchestrator shut down")
        return
    typer.echo("orchestrator shut down: " + ", ".join(f"{n} {s}" for n, s in states.items()))


if __name__ == "__main__":  # `python -m baton.cli.agents ...`, the same as `baton agents ...`
    app()
