"""Process agents killed, hung and stubborn: real signals, real process trees."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from agents_kit import (
    WAIT,
    Beating,
    Idle,
    Quick,
    Stubborn,
    WithChild,
    first,
    gate,
    running,
    wait_event,
    wait_state,
)
from baton.agents import AgentState, EventType, Orchestrator, Restart, RestartPolicy, RunMode

pytestmark = pytest.mark.timeout(60)

E = EventType
TESTS = Path(__file__).resolve().parent


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + WAIT
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} is still alive"
        time.sleep(0.02)


def test_sigkill_from_outside_is_reported_and_restarted_within_the_budget() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON)
    policy = RestartPolicy(max_restarts=2, window=600, initial_delay=0)
    orch.register_agent(Idle, "victim", execution="process", restart=policy)
    with running(orch):
        for generation in (1, 2, 3):
            wait_event(orch, E.AGENT_READY, "victim", generation=generation)
            pid = orch.status("victim")["pid"]
            os.kill(pid, signal.SIGKILL)
            ended = wait_event(orch, E.AGENT_TERMINATED, "victim", generation=generation)
            assert ended.data["signal"] == 9 and ended.data["signal_name"] == "SIGKILL"
            assert ended.data["exit_code"] is None and ended.data["outcome"] == "killed"
            assert ended.data["pid"] == pid
            if generation < 3:
                again = wait_event(orch, E.AGENT_RESTARTED, "victim", generation=generation + 1)
                assert again.seq > ended.seq and again.data["cause"] == "killed"
        # the third kill exhausts max_restarts=2: reported, and no fourth generation
        limit = wait_event(orch, E.AGENT_ERROR, "victim", type="RestartLimitReached")
        wait_state(orch, "victim", AgentState.FAILED)
        assert limit.seq > ended.seq
        starts = [e for e in orch.history("victim") if e.type == E.AGENT_STARTED]
        assert [e.data["generation"] for e in starts] == [1, 2, 3]
        assert orch.status("victim")["restarts"] == 2


def test_a_hung_process_is_found_by_its_missing_heartbeat_and_restarted() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON, stop_timeout=0.2, kill_timeout=0.2)
    policy = RestartPolicy(max_restarts=1, initial_delay=0)
    orch.register_agent(Beating, "hung", execution="process", heartbeat_timeout=0.3, restart=policy)
    with running(orch):
        missed = wait_event(orch, E.AGENT_ERROR, "hung", type="HeartbeatTimeout", generation=1)
        ended = wait_event(orch, E.AGENT_TERMINATED, "hung", generation=1)
        restarted = wait_event(orch, E.AGENT_RESTARTED, "hung", generation=2)
        beats = [e for e in orch.history("hung") if e.type == E.AGENT_HEARTBEAT]
        assert beats and beats[0].seq < missed.seq < ended.seq < restarted.seq
        # it ignored the cooperative stop: SIGTERM ended it
        assert ended.data["signal"] == signal.SIGTERM and ended.data["stop_stage"] == "SIGTERM"
        assert ended.data["stop_reason"] == "heartbeat" and ended.data["outcome"] == "failed"
        assert restarted.data["cause"] == "heartbeat"
        # the second generation hangs too; one restart was all the policy allowed
        wait_event(orch, E.AGENT_ERROR, "hung", type="RestartLimitReached")
        wait_state(orch, "hung", AgentState.FAILED)


def test_a_hung_thread_is_found_by_its_heartbeat_reported_stuck_and_replaced() -> None:
    release = "hung-thread-release"
    orch = Orchestrator(run_mode=RunMode.DAEMON, stop_timeout=0.2)
    orch.register_agent(
        Beating,
        "hung-thread",
        config={"release": release},
        heartbeat_timeout=0.3,
        restart=RestartPolicy(max_restarts=1, initial_delay=0),
    )
    with running(orch):
        missed = wait_event(orch, E.AGENT_ERROR, "hung-thread", type="HeartbeatTimeout")
        stuck = wait_event(orch, E.AGENT_STUCK, "hung-thread", generation=1)
        restarted = wait_event(orch, E.AGENT_RESTARTED, "hung-thread", generation=2)
        assert missed.seq < stuck.seq < restarted.seq
        assert stuck.data["stop_reason"] == "heartbeat"
        wait_state(orch, "hung-thread", AgentState.FAILED)  # gen 2 hangs; budget spent
        assert len(orch.status("hung-thread")["stuck"]) == 2  # both still in view
        gate(release).set()
        for generation in (1, 2):
            late = wait_event(orch, E.AGENT_TERMINATED, "hung-thread", generation=generation)
            assert late.data["outcome"] == "stopped late"


def test_a_process_that_ignores_sigterm_is_killed_with_its_children() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON, stop_timeout=0.2, kill_timeout=0.2)
    orch.register_agent(Stubborn, "stubborn", execution="process")
    with running(orch):
        child = orch.receive(WAIT)
        assert child is not None
        grandchild = child.body["child"]
        pid = orch.status("stubborn")["pid"]
        assert psutil.Process(grandchild).ppid() == pid
        executing = orch.receive(WAIT)  # in execute(), which ignores stops
        assert executing is not None and executing.body == {"executing": True}
        assert orch.stop("stubborn") == AgentState.STOPPED
        ended = first(orch.history(), E.AGENT_TERMINATED, "stubborn")
        assert ended.data["signal"] == 9 and ended.data["stop_stage"] == "SIGKILL"
        assert ended.data["outcome"] == "stopped" and ended.data["stop_reason"] == "requested"
        wait_gone(pid)
        wait_gone(grandchild)  # it ignored SIGTERM too: the tree got SIGKILL


def test_a_stopped_process_agent_takes_its_children_with_it() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON)
    orch.register_agent(WithChild, "parent", execution="process")
    with running(orch):
        message = orch.receive(WAIT)
        assert message is not None
        assert orch.stop("parent") == AgentState.STOPPED
        ended = first(orch.history(), E.AGENT_TERMINATED, "parent")
        assert ended.data["exit_code"] == 0 and ended.data["stop_stage"] == "cooperative"
        wait_gone(message.body["child"])


def test_always_restarts_completed_agents_until_the_budget_is_spent() -> None:
    orch = Orchestrator()
    policy = RestartPolicy(when=Restart.ALWAYS, max_restarts=2, initial_delay=0)
    orch.register_agent(Quick, "again", execution="process", restart=policy)
    assert orch.simple_join(handle_signals=False) == {"again": AgentState.COMPLETED}
    ended = [e for e in orch.history("again") if e.type == E.AGENT_TERMINATED]
    assert [e.data["outcome"] for e in ended] == ["completed"] * 3
    assert first(orch.history(), E.AGENT_RESTARTED, "again").data["cause"] == "completed"


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from agents_kit import Idle
    from baton.agents import Orchestrator, RunMode

    if __name__ == "__main__":
        orch = Orchestrator(run_mode=RunMode.DAEMON, stop_timeout=0.5)
        orch.register_agent(Idle, "left-behind", execution="process")
        orch.start()
        ready = orch.events.wait_for(
            __import__("baton.agents").agents.EventType.AGENT_READY, "left-behind", timeout=20
        )
        print(orch.status("left-behind")["pid"], flush=True)
        time.sleep(60)
    """
)


def test_process_agents_stop_when_their_orchestrator_dies(tmp_path: Path) -> None:
    script = tmp_path / "orphan.py"
    script.write_text(ORPHAN_SCRIPT.format(tests=str(TESTS)))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline() if parent.stdout else ""
        agent_pid = int(line)
        assert not gone(agent_pid)
        parent.kill()  # SIGKILL: no shutdown, no atexit
        parent.wait(WAIT)
        wait_gone(agent_pid)  # the agent saw its pipe close and stopped
    finally:
        if parent.poll() is None:
            parent.kill()
        if parent.stdout:
            parent.stdout.close()
