"""`baton nodes ls` on both backends: live workers, their heartbeats and the runs they hold."""

from __future__ import annotations

import json
import threading

from typer.testing import CliRunner

from baton.cli.main import app as cli_app
from conftest import wait_until

runner = CliRunner()


def test_nodes_ls_shows_each_worker_and_the_runs_it_holds(make_app, store_path) -> None:
    gate = threading.Event()
    first = make_app(heartbeat_interval=0.2)
    second = make_app(heartbeat_interval=0.2, queues=["other"])

    @first.step()
    def hold() -> str:
        gate.wait(10)
        return "done"

    @first.workflow(version="2")
    def busy() -> str:
        return hold()

    @second.workflow()
    def idle() -> str:
        return "idle"

    second.launch()
    handle = first.start(busy)
    try:
        wait_until(lambda: handle.status() == "RUNNING", what="the run to start")
        result = runner.invoke(cli_app, ["--store", str(store_path), "nodes", "ls", "--json"])
        assert result.exit_code == 0, result.output
        nodes = {n["id"]: n for n in json.loads(result.stdout)}
        assert len(nodes) == 2
        owned = {n["runs_owned"] for n in nodes.values()}
        assert owned == {0, 1}
        busy_node = next(n for n in nodes.values() if n["runs_owned"] == 1)
        assert busy_node["versions"] == ["busy@2"]
        assert all(n["state"] == "alive" and n["heartbeat_age"] >= 0 for n in nodes.values())
        table = runner.invoke(cli_app, ["--store", str(store_path), "nodes", "ls"])
        assert table.exit_code == 0 and busy_node["id"] in table.output
        assert "alive" in table.output
    finally:
        gate.set()
    assert handle.result(timeout=10) == "done"


def test_nodes_ls_with_no_workers(make_app, store_path) -> None:
    make_app(worker=False)
    result = runner.invoke(cli_app, ["--store", str(store_path), "nodes", "ls"])
    assert result.exit_code == 0
    assert "no nodes" in result.output
