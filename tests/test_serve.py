"""`baton serve` as a real process, and the CLI driving it over its UNIX socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from baton.cli.main import app as cli_app

BATON = str(Path(sys.executable).with_name("baton"))
CLEAN = {k: None for k in ("BATON_STORE", "BATON_SOCKET", "BATON_TOKEN", "BATON_AGENTS_SOCKET")}
runner = CliRunner(env={**CLEAN, "FORCE_COLOR": None, "TTY_COMPATIBLE": None})
ADMIN, VIEWER = "admin-secret-0123456789", "viewer-secret-0123456789"

FLOWS = """
import time

import baton

app = baton.App()


@app.step()
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.workflow(name="greet")
def greet(name: str) -> str:
    return f"hello {name}"


@app.workflow(name="slow")
def slow(seconds: float) -> float:
    return nap(seconds)
"""


class NodeProcess:
    """`baton serve --config <dir>/baton.yaml` in `cwd`, with its socket under a short dir."""

    def __init__(self, cwd: Path, run_dir: Path, extra: str = "") -> None:
        self.cwd = cwd
        self.socket = run_dir / "run" / "node.sock"
        self.store = cwd / "data" / "baton.db"
        (cwd / "flows.py").write_text(FLOWS)
        self.config = cwd / "baton.yaml"
        self.config.write_text(
            f"app: flows:app\nstore: sqlite:///{self.store}\n"
            f"server:\n  port: 0\n  socket: {self.socket}\n{extra}"
        )
        self.log = cwd / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> NodeProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env["BATON_LOG_LEVEL"] = "INFO"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [BATON, "serve", "--config", str(self.config)],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started = self.wait_for_line("node started")
        self.port = int(started["listen"].rsplit(":", 1)[1])
        return self

    def lines(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"event": line})
        return out

    def wait_for_line(self, event: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if line.get("event") == event:
                    return line
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the node exited {self.proc.returncode}:\n{self.log.read_text()}")
            time.sleep(0.05)
        pytest.fail(f"no {event!r} in the node's log:\n{self.log.read_text()}")

    def http(self, token: str | None = None) -> httpx.Client:
        """The API over TCP."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=headers, timeout=30)

    def uds(self, token: str | None = None) -> httpx.Client:
        """The API over the UNIX socket."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        transport = httpx.HTTPTransport(uds=str(self.socket))
        return httpx.Client(
            transport=transport, base_url="http://node", headers=headers, timeout=30
        )

    def cli(self, *args: str, token: str | None = None) -> Result:
        """The CLI, pointed at the node's socket and at a store that does not exist: only the
        node can answer."""
        nowhere = str(self.cwd / "nowhere" / "baton.db")
        env = {"BATON_TOKEN": token} if token else {}
        return runner.invoke(
            cli_app, ["--socket", str(self.socket), "--store", nowhere, *args], env=env
        )

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path for sockets (a UNIX socket path has at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="bt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def node(tmp_path: Path, short_dir: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path, short_dir).start()
    yield proc
    proc.terminate()


TOKENS = f"""  tokens:
    - {{name: ops, token: {ADMIN}, role: admin}}
    - {{name: watcher, token: {VIEWER}, role: viewer}}
"""


@pytest.fixture
def guarded(tmp_path: Path, short_dir: Path) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path, short_dir, extra=TOKENS).start()
    yield proc
    proc.terminate()


def start_run(node: NodeProcess, workflow: str, value: Any, token: str | None = None) -> str:
    with node.uds(token) as client:
        answer = client.post("/api/v1/runs", json={"workflow": workflow, "input": value})
    assert answer.status_code == 201, answer.text
    return answer.json()["run_id"]


def wait_for_status(node: NodeProcess, run_id: str, wanted: str, token: str | None = None) -> None:
    deadline = time.monotonic() + 30
    with node.uds(token) as client:
        while time.monotonic() < deadline:
            if client.get(f"/api/v1/runs/{run_id}").json()["status"] == wanted:
                return
            time.sleep(0.05)
    pytest.fail(f"run {run_id} never became {wanted}")


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


# -- a node and the CLI ---------------------------------------------------------------------------
def test_socket_is_private(node: NodeProcess) -> None:
    assert stat.S_IMODE(os.stat(node.socket).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(node.socket).st_mode)
    assert stat.S_IMODE(os.stat(node.socket.parent).st_mode) == 0o700


def test_health_over_tcp(node: NodeProcess) -> None:
    with node.http() as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"status": "ready"}


def test_cli_goes_through_the_node(node: NodeProcess) -> None:
    run_id = start_run(node, "greet", "ada")
    wait_for_status(node, run_id, "SUCCEEDED")
    listed = json.loads(ok(node.cli("runs", "ls", "--json")).stdout)
    assert [r["run_id"] for r in listed] == [run_id]
    assert listed[0]["output"] == "hello ada" and listed[0]["workflow"] == "greet"
    table = ok(node.cli("runs", "ls")).stdout
    assert run_id in table and "greet@1" in table and "SUCCEEDED" in table
    shown = json.loads(ok(node.cli("runs", "show", run_id, "--json")).stdout)
    assert shown["run"]["run_id"] == run_id and shown["steps"] == []
    events = json.loads(ok(node.cli("events", "ls", "--run", run_id, "--json")).stdout)
    assert [e["type"] for e in events][-1] == "baton.run.succeeded"
    assert json.loads(ok(node.cli("dlq", "ls", "--json")).stdout) == []
    nodes = json.loads(ok(node.cli("nodes", "ls", "--json")).stdout)
    assert [n["state"] for n in nodes] == ["alive"]
    assert json.loads(ok(node.cli("schedules", "ls", "--json")).stdout) == []


def test_json_is_the_same_through_the_node_and_from_the_store(node: NodeProcess) -> None:
    run_id = start_run(node, "greet", "bob")
    wait_for_status(node, run_id, "SUCCEEDED")
    direct_env = {"BATON_SOCKET": str(node.cwd / "no-node.sock")}
    for args in (["runs", "ls"], ["runs", "show", run_id], ["events", "ls", "--run", run_id]):
        through = json.loads(ok(node.cli(*args, "--json")).stdout)
        direct = runner.invoke(
            cli_app, ["--store", str(node.store), *args, "--json"], env=direct_env
        )
        assert json.loads(ok(direct).stdout) == through


def test_cancel_through_the_node(node: NodeProcess) -> None:
    run_id = start_run(node, "slow", 5)
    wait_for_status(node, run_id, "RUNNING")
    result = ok(node.cli("runs", "cancel", run_id))
    assert f"run {run_id} (slow@1) is CANCELLED" in result.stdout


def test_problems_are_one_line_errors(node: NodeProcess) -> None:
    result = node.cli("runs", "show", "no-such-run")
    assert result.exit_code == 1
    assert result.stderr == "error: RunNotFound: no run with id no-such-run\n"
    assert "Traceback" not in result.output


def test_agents_of_the_node(node: NodeProcess) -> None:
    table = ok(node.cli("agents", "ps")).stdout
    assert "api" in table and "workers-scheduler" in table and "RUNNING" in table
    names = {a["name"]: a for a in json.loads(ok(node.cli("agents", "ps", "--json")).stdout)}
    assert {"api", "workers-scheduler"} <= set(names)
    assert all(a["state"] == "RUNNING" for a in names.values())
    status = json.loads(ok(node.cli("agents", "status", "api", "--json")).stdout)
    assert status["config"]["socket"] == str(node.socket)
    unknown = node.cli("agents", "status", "nope")
    assert unknown.exit_code == 1 and "no agent named 'nope'" in unknown.stderr


def test_workers_stop_and_start_again(node: NodeProcess) -> None:
    stopped = ok(node.cli("agents", "stop", "workers-scheduler")).stdout
    assert stopped.startswith("workers-scheduler: STOPPED")
    run_id = start_run(node, "greet", "zoe")  # stored; no worker takes it yet
    time.sleep(0.5)
    assert json.loads(ok(node.cli("runs", "show", run_id, "--json")).stdout)["run"]["status"] == (
        "ENQUEUED"
    )
    ok(node.cli("agents", "start", "workers-scheduler"))
    wait_for_status(node, run_id, "SUCCEEDED")


def test_without_a_node_the_cli_opens_the_store(node: NodeProcess, tmp_path: Path) -> None:
    run_id = start_run(node, "greet", "eve")
    wait_for_status(node, run_id, "SUCCEEDED")
    stale = tmp_path / "stale.sock"  # a socket file nobody listens on: no node
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(stale))
    sock.close()
    for where in (stale, tmp_path / "missing.sock"):
        result = runner.invoke(
            cli_app, ["--socket", str(where), "--store", str(node.store), "runs", "ls", "--json"]
        )
        assert run_id in {r["run_id"] for r in json.loads(ok(result).stdout)}
    missing = runner.invoke(
        cli_app, ["--socket", str(stale), "--store", str(tmp_path / "none.db"), "runs", "ls"]
    )
    assert missing.exit_code == 1 and "no Baton store at" in missing.stderr


# -- tokens ---------------------------------------------------------------------------------------
def test_roles_over_the_socket(guarded: NodeProcess) -> None:
    run_id = start_run(guarded, "slow", 5, token=ADMIN)
    wait_for_status(guarded, run_id, "RUNNING", token=ADMIN)
    assert run_id in ok(guarded.cli("runs", "ls", token=VIEWER)).stdout

    refused = guarded.cli("runs", "cancel", run_id, token=VIEWER)
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: Forbidden: this needs the operator role")
    assert "'watcher' has viewer" in refused.stderr and "BATON_TOKEN" in refused.stderr

    missing = guarded.cli("runs", "ls")
    assert missing.exit_code == 1 and missing.stderr.startswith("error: Unauthorized:")
    assert "BATON_TOKEN" in missing.stderr

    done = ok(guarded.cli("runs", "cancel", run_id, token=ADMIN))
    assert "CANCELLED" in done.stdout
    with guarded.http() as anonymous:
        assert anonymous.get("/api/v1/runs").status_code == 401
        assert anonymous.get("/healthz").status_code == 200
    text = guarded.log.read_text()
    assert ADMIN not in text and VIEWER not in text
    assert guarded.wait_for_line("node starting")["config"]["server"]["tokens"][0]["token"] == "***"


# -- stopping -------------------------------------------------------------------------------------
def test_sigterm_drains_and_exits_0(node: NodeProcess) -> None:
    run_id = start_run(node, "slow", 2)
    wait_for_status(node, run_id, "RUNNING")
    with node.http() as client:
        assert node.proc is not None
        node.proc.send_signal(signal.SIGTERM)
        seen = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and node.proc.poll() is None:
            try:
                answer = client.get("/readyz")
            except httpx.HTTPError:
                break  # the API stopped accepting
            seen.add((answer.status_code, answer.json()["status"]))
            time.sleep(0.05)
    assert (503, "stopping") in seen
    assert node.terminate() == 0
    assert not node.socket.exists() and not (node.socket.parent / "agents.sock").exists()
    direct = runner.invoke(
        cli_app, ["--socket", str(node.socket), "--store", str(node.store), "runs", "ls", "--json"]
    )
    (run,) = json.loads(ok(direct).stdout)
    assert run["run_id"] == run_id and run["status"] == "SUCCEEDED"  # finished while draining
    assert node.lines()[-1]["event"] == "node stopped"


def test_a_second_node_on_the_socket_is_refused(node: NodeProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    done = subprocess.run(
        [BATON, "serve", "--config", str(node.config)],
        cwd=node.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert f"error: cannot listen on {node.socket}: another node is listening" in done.stderr
    assert ok(node.cli("runs", "ls"))  # the first one still answers on its socket


# -- refusing to start ----------------------------------------------------------------------------
def refused(node: NodeProcess, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    done = subprocess.run(
        [BATON, "serve", "--config", str(node.config), *flags],
        cwd=node.cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert not node.socket.exists() and not node.socket.parent.exists()  # nothing bound
    return done


def test_a_config_error_exits_2_with_its_position(tmp_path: Path, short_dir: Path) -> None:
    node = NodeProcess(tmp_path, short_dir, extra="  max_body: lots\n  hots: x\n")
    done = refused(node)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert f"{node.config}:6:13: server.max_body: 'lots' is not a size" in lines[0]
    assert lines[1].startswith(f"{node.config}:7:3: server.hots: unknown key 'hots'")
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_no_tokens_beyond_loopback(tmp_path: Path, short_dir: Path) -> None:
    done = refused(NodeProcess(tmp_path, short_dir), "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "server.host: 0.0.0.0 is not a loopback address" in done.stderr
    assert "tokens" in done.stderr


def test_an_app_that_cannot_be_found(tmp_path: Path, short_dir: Path) -> None:
    node = NodeProcess(tmp_path, short_dir)
    done = refused(node, "--app", "flows:missing")
    assert done.returncode == 2
    assert "app: module 'flows' has no attribute 'missing'" in done.stderr


def test_an_app_on_another_store(tmp_path: Path, short_dir: Path) -> None:
    node = NodeProcess(tmp_path, short_dir)
    (tmp_path / "flows.py").write_text(FLOWS.replace("baton.App()", 'baton.App("own.db")'))
    done = refused(node)
    assert done.returncode == 2
    assert f"store: the app opened the store sqlite:///own.db, not sqlite:///{node.store}" in (
        done.stderr
    )
