"""The agent examples run as documented, the DAEMON one driven by `baton agents`."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton.cli.agents import app as agents_cli

pytestmark = pytest.mark.timeout(90)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "agents"
runner = CliRunner()


def run_example(name: str, cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_collector_example(tmp_path: Path) -> None:
    collector = run_example("collector.py", tmp_path)
    assert collector.count("collector: {'sample'") == 5 and "collector COMPLETED" in collector


def test_the_sensors_example(tmp_path: Path) -> None:
    sensors = run_example("sensors.py", tmp_path)
    assert "broken-gauge: agent 'broken-gauge': invalid config: amplitude" in sensors
    assert "colour: Extra inputs are not permitted" in sensors
    for name in ("thermometer", "hygrometer", "barometer"):
        assert f"{name:12} COMPLETED" in sensors
    assert "broken-gauge FAILED" in sensors


def test_the_heartbeat_example(tmp_path: Path) -> None:
    heartbeat = run_example("heartbeat.py", tmp_path)
    assert heartbeat.count("'type': 'HeartbeatTimeout'") == 3
    assert heartbeat.count("AGENT_RESTARTED") == 2 and "RestartLimitReached" in heartbeat
    assert "FAILED" in heartbeat.splitlines()[-1]


def test_the_daemon_example_is_driven_from_the_cli() -> None:
    with tempfile.TemporaryDirectory(prefix="bta-", dir="/tmp") as directory:
        sock = str(Path(directory) / "ctl" / "agents.sock")
        daemon = subprocess.Popen(
            [sys.executable, str(EXAMPLES / "daemon.py"), "--socket", sock],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert daemon.stdout is not None
            assert "control socket" in daemon.stdout.readline()

            def agents(*args: str) -> object:
                result = runner.invoke(agents_cli, ["--socket", sock, *args, "--json"])
                assert result.exit_code == 0, result.output
                return json.loads(result.stdout)

            deadline = time.monotonic() + 20
            while {r["state"] for r in agents("ps")} != {"RUNNING"}:  # type: ignore[union-attr]
                assert time.monotonic() < deadline, agents("ps")
                time.sleep(0.05)
            assert agents("status", "db")["config"]["password"] == "***"  # type: ignore[index]
            assert agents("stop", "ingest")["state"] == "STOPPED"  # type: ignore[index]
            assert agents("start", "ingest")["status"]["generation"] == 2  # type: ignore[index]
            restarted = agents("restart", "api")
            assert restarted["status"]["generation"] == 2  # type: ignore[index]
            assert len(agents("stats")) == 3  # type: ignore[arg-type]
            assert agents("history", "--name", "api")  # type: ignore[truthy-bool]
            final = agents("shutdown")
            assert final in (
                {"shutting_down": True},
                {"states": {"db": "STOPPED", "ingest": "STOPPED", "api": "STOPPED"}},
            )
            assert daemon.wait(20) == 0
            assert "shut down" in daemon.stdout.read()
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
