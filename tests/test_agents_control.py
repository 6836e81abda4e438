"""The control socket and `baton agents`, against a real running orchestrator."""

from __future__ import annotations

import json
import os
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agents_kit import WAIT, Idle, Sensor, wait_event, wait_state
from baton.agents import (
    AgentState,
    ControlClient,
    ControlError,
    ControlSocketError,
    EventType,
    Orchestrator,
    RunMode,
)
from baton.cli.agents import app as agents_cli

pytestmark = pytest.mark.timeout(60)

E = EventType
runner = CliRunner()


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # UNIX socket paths are short (107 bytes): pytest's tmp_path can be longer
    with tempfile.TemporaryDirectory(prefix="bta-", dir="/tmp") as directory:
        yield Path(directory) / "ctl"  # created by the orchestrator, mode 0700


@pytest.fixture
def daemon(socket_dir: Path) -> Iterator[Orchestrator]:
    orch = Orchestrator(
        run_mode=RunMode.DAEMON,
        control_socket=socket_dir / "agents.sock",
        stop_timeout=2.0,
        kill_timeout=1.0,
    )
    orch.register_agent(
        Sensor,
        "sensor",
        config={"interval": 0.05, "api_token": "tok-123", "db_password": "hunter2", "unit": "C"},
    )
    orch.register_agent(Idle, "worker", execution="process")
    orch.register_agent(Idle, "helper", depends_on=["worker"])
    orch.start()
    wait_event(orch, E.AGENT_READY, "helper")
    wait_event(orch, E.AGENT_READY, "sensor")
    try:
        yield orch
    finally:
        orch.shutdown(timeout=2.0)


def cli(orch: Orchestrator, *args: str):  # type: ignore[no-untyped-def]
    result = runner.invoke(agents_cli, ["--socket", str(orch.config.control_socket), *args])
    return result


def cli_json(orch: Orchestrator, *args: str) -> object:
    result = cli(orch, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_the_socket_is_0600_in_a_0700_directory(daemon: Orchestrator) -> None:
    path = Path(daemon.config.control_socket)
    info = os.stat(path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


def test_ps_and_status_with_secrets_redacted(daemon: Orchestrator) -> None:
    rows = {r["name"]: r for r in cli_json(daemon, "ps")}
    assert set(rows) == {"sensor", "worker", "helper"}
    assert rows["worker"]["state"] == "RUNNING" and rows["worker"]["execution"] == "process"
    assert rows["helper"]["depends_on"] == ["worker"]
    table = cli(daemon, "ps")
    assert table.exit_code == 0 and "worker" in table.output and "RUNNING" in table.output

    doc = cli_json(daemon, "status", "sensor")
    assert doc["config"]["api_token"] == "***"  # a SecretStr
    assert doc["config"]["db_password"] == "***"  # a secret-sounding key
    assert doc["config"]["unit"] == "C"
    assert doc["class"] == "agents_kit:Sensor"
    shown = cli(daemon, "status", "sensor")
    assert shown.exit_code == 0
    assert "hunter2" not in shown.output and "tok-123" not in shown.output
    assert "RUNNING" in shown.output


def test_stop_start_restart_from_the_cli(daemon: Orchestrator) -> None:
    stopped = cli_json(daemon, "stop", "worker")
    assert stopped["state"] == "STOPPED"
    assert daemon.state("worker") == AgentState.STOPPED
    started = cli(daemon, "start", "worker")
    assert started.exit_code == 0, started.output
    wait_event(daemon, E.AGENT_READY, "worker", generation=2)
    restarted = cli(daemon, "restart", "worker")
    assert restarted.exit_code == 0 and "worker:" in restarted.output
    wait_event(daemon, E.AGENT_READY, "worker", generation=3)
    assert (
        wait_event(daemon, E.AGENT_RESTARTED, "worker", generation=3).data["cause"] == "requested"
    )


def test_history_and_stats(daemon: Orchestrator) -> None:
    events = cli_json(daemon, "history", "--name", "worker")
    assert {e["agent"] for e in events} == {"worker"}
    assert [e["type"] for e in events][:3] == ["AGENT_REGISTERED", "AGENT_STARTED", "AGENT_READY"]
    limited = cli_json(daemon, "history", "--limit", "2")
    assert len(limited) == 2
    assert cli(daemon, "history").exit_code == 0

    figures = {s["name"]: s for s in cli_json(daemon, "stats")}
    assert set(figures) == {"sensor", "worker", "helper"}
    worker = figures["worker"]
    assert worker["pid"] != os.getpid() and worker["rss"] > 0 and worker["threads"] >= 1
    assert worker["cpu_seconds"] is not None and worker["uptime"] >= 0
    sensor = figures["sensor"]
    assert sensor["pid"] == os.getpid() and sensor["shared_process"] is True
    assert sensor["cpu_seconds"] is not None  # its own thread's CPU time (Linux)
    table = cli(daemon, "stats")
    assert table.exit_code == 0 and "MiB" in table.output


def test_shutdown_from_the_cli_ends_the_orchestrator(daemon: Orchestrator) -> None:
    result = cli(daemon, "shutdown")
    assert result.exit_code == 0, result.output
    assert "shut down" in result.output
    assert daemon.join(WAIT)
    assert set(daemon.states().values()) == {AgentState.STOPPED}
    assert not Path(daemon.config.control_socket).exists()
    gone = cli(daemon, "ps")
    assert gone.exit_code == 1 and "no orchestrator answers" in gone.output


def test_unknown_names_and_bad_requests_get_clear_errors(daemon: Orchestrator) -> None:
    for command in ("status", "stop", "start", "restart"):
        result = cli(daemon, command, "nope")
        assert result.exit_code == 1
        assert "no agent named 'nope'" in result.output and "worker" in result.output
    history = cli(daemon, "history", "--name", "nope")
    assert history.exit_code == 1 and "no agent named 'nope'" in history.output

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(WAIT)
        conn.connect(str(daemon.config.control_socket))
        reader = conn.makefile("rb")
        answers = []
        for line in (b"{not json\n", b"[1, 2]\n", b'{"op": 7}\n', b'{"op": "dance"}\n'):
            conn.sendall(line)
            answers.append(json.loads(reader.readline()))
        conn.sendall(b'{"op": "stop"}\n')  # a known op without its name
        answers.append(json.loads(reader.readline()))
        conn.sendall(b'{"op": "ps"}\n')  # the same connection still works
        still = json.loads(reader.readline())
    assert [a["ok"] for a in answers] == [False] * 5
    assert {a["error"]["type"] for a in answers} == {"BadRequest"}
    assert "not JSON" in answers[0]["error"]["message"]
    assert "unknown op 'dance'" in answers[3]["error"]["message"]
    assert still["ok"] and len(still["result"]) == 3
    # and the orchestrator kept running
    assert daemon.state("worker") == AgentState.RUNNING
    with pytest.raises(ControlError, match="no agent named 'nope'"):
        ControlClient(daemon.config.control_socket).request("send", name="nope", message=1)


def test_the_socket_env_var_is_honoured(daemon: Orchestrator) -> None:
    result = runner.invoke(
        agents_cli, ["ps", "--json"], env={"BATON_AGENTS_SOCKET": str(daemon.config.control_socket)}
    )
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 3


def test_an_unsafe_socket_directory_is_refused_before_anything_starts(tmp_path: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="bta-", dir="/tmp"))
    try:
        os.chmod(shared, 0o755)
        orch = Orchestrator(control_socket=shared / "agents.sock")
        orch.register_agent(Idle, "never")
        with pytest.raises(ControlSocketError, match="must be 0700"):
            orch.start()
        assert orch.state("never") == AgentState.REGISTERED
    finally:
        os.rmdir(shared)


def test_a_second_orchestrator_on_the_same_socket_is_refused(daemon: Orchestrator) -> None:
    other = Orchestrator(control_socket=daemon.config.control_socket)
    with pytest.raises(ControlSocketError, match="another orchestrator is listening"):
        other.start()
    wait_state(daemon, "worker", AgentState.RUNNING)
