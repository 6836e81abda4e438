"""Agents end to end on real threads and processes: order, slots, run modes, messages."""

from __future__ import annotations

import pytest

from agents_kit import (
    WAIT,
    Blocked,
    Counter,
    Deaf,
    Echo,
    Gated,
    Idle,
    Loader,
    NotReadyYet,
    Quick,
    Sensor,
    SlowPeriodic,
    first,
    gate,
    kinds,
    running,
    wait_event,
    wait_state,
)
from baton.agents import AgentState, Dep, EventType, Orchestrator, RestartPolicy, RunMode
from baton.store import open_store

pytestmark = pytest.mark.timeout(60)

E = EventType


def test_dependents_start_only_after_their_dependencies_are_ready() -> None:
    orch = Orchestrator(max_workers=4)
    # registered backwards on purpose: the graph decides, not the registration order
    orch.register_agent(Quick, "api", depends_on=["cache", Dep("loader", until="completed")])
    orch.register_agent(Quick, "cache", depends_on=["db"], execution="process")
    orch.register_agent(NotReadyYet, "db")
    orch.register_agent(Loader, "loader")
    orch.start()
    wait_event(orch, E.AGENT_STARTED, "db")
    assert orch.state("cache") == AgentState.WAITING  # db is not READY until it says so
    gate("db").set()
    assert orch.join(WAIT)
    events = orch.history()
    seq = {
        (e.type, e.agent): e.seq
        for e in reversed(events)  # the first of each kind wins
    }
    assert seq[(E.AGENT_READY, "db")] < seq[(E.AGENT_STARTED, "cache")]
    assert seq[(E.AGENT_READY, "cache")] < seq[(E.AGENT_STARTED, "api")]
    loader_done = first(events, E.AGENT_TERMINATED, "loader", outcome="completed")
    assert loader_done.seq < seq[(E.AGENT_STARTED, "api")]
    assert orch.states()["api"] == AgentState.COMPLETED
    assert kinds(events)[-1] == "ALL_AGENTS_TERMINATED"


def test_max_workers_queues_by_priority_then_fifo_and_fills_freed_slots() -> None:
    orch = Orchestrator(max_workers=2)
    names = ["q-first", "q-second", "q-low", "q-high", "q-mid"]
    priorities = {"q-low": 0, "q-high": 9, "q-mid": 5}
    for name in names:
        orch.register_agent(Gated, name, priority=priorities.get(name, 10))
    with running(orch):
        wait_event(orch, E.AGENT_STARTED, "q-second")
        assert {orch.state(n) for n in ("q-low", "q-high", "q-mid")} == {AgentState.QUEUED}
        for name in ["q-first", "q-second", "q-high", "q-mid", "q-low"]:  # in start order
            gate(name).set()
            wait_event(orch, E.AGENT_TERMINATED, name)
        assert orch.join(WAIT)
    events = orch.history()
    started = [e.agent for e in events if e.type == E.AGENT_STARTED]
    assert started == ["q-first", "q-second", "q-high", "q-mid", "q-low"]
    live = peak = 0
    for e in events:
        live += {E.AGENT_STARTED: 1, E.AGENT_TERMINATED: -1}.get(e.type, 0)
        peak = max(peak, live)
    assert peak == 2
    # the k-th queued agent started only once k agents had exited: freed slots, nothing else
    for k, name in enumerate(("q-high", "q-mid", "q-low"), start=1):
        start = first(events, E.AGENT_STARTED, name)
        exits_before = [e for e in events[: events.index(start)] if e.type == E.AGENT_TERMINATED]
        assert len(exits_before) == k


def test_stop_on_empty_exits_once_everything_has_ended() -> None:
    orch = Orchestrator(run_mode=RunMode.STOP_ON_EMPTY)
    orch.register_agent(Quick, "one")
    orch.register_agent(Quick, "two", execution="process")
    states = orch.simple_join(handle_signals=False)
    assert states == {"one": AgentState.COMPLETED, "two": AgentState.COMPLETED}
    assert kinds(orch.history())[-1] == "ALL_AGENTS_TERMINATED"


def test_daemon_stays_up_after_its_agents_end_until_shut_down() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON)
    orch.register_agent(Quick, "brief")
    orch.start()
    wait_event(orch, E.ALL_AGENTS_TERMINATED)
    assert not orch.join(timeout=0.2)  # still up: a daemon waits to be told
    orch.register_agent(Quick, "late")  # and accepts new agents while up
    wait_event(orch, E.AGENT_TERMINATED, "late", outcome="completed")
    assert orch.start("brief") in (AgentState.QUEUED, AgentState.STARTING, AgentState.RUNNING)
    wait_event(orch, E.AGENT_STARTED, "brief", generation=2)
    orch.shutdown()
    assert orch.join(0)


def test_looping_agent_recovers_from_recoverable_errors_and_dies_of_others() -> None:
    orch = Orchestrator()
    orch.register_agent(Counter, "recovers", config={"limit": 4, "recover_at": 2})
    orch.register_agent(Counter, "dies", config={"limit": 4, "die_at": 3}, execution="process")
    states = orch.simple_join(handle_signals=False)
    assert states == {"recovers": AgentState.COMPLETED, "dies": AgentState.FAILED}
    got: dict[str, list[int]] = {}
    while (message := orch.receive(0)) is not None:
        got.setdefault(message.agent, []).append(message.body)
    assert got == {"recovers": [1, 3, 4], "dies": [1, 2]}
    hiccup = first(orch.history(), E.AGENT_ERROR, "recovers")
    assert hiccup.data["recoverable"] and hiccup.data["type"] == "RecoverableError"
    fatal = first(orch.history(), E.AGENT_ERROR, "dies")
    assert fatal.data["type"] == "ValueError" and "fatal at 3" in fatal.data["traceback"]


def test_one_class_many_configs_and_periodic_limits() -> None:
    orch = Orchestrator()
    for name, unit in (("s-1", "C"), ("s-2", "F"), ("s-3", "K")):
        orch.register_agent(Sensor, name, config={"interval": 0.01, "unit": unit, "limit": 3})
    assert set(orch.simple_join(handle_signals=False).values()) == {AgentState.COMPLETED}
    readings: dict[str, list[tuple[int, str]]] = {}
    while (m := orch.receive(0)) is not None:
        readings.setdefault(m.agent, []).append((m.body["reading"], m.body["unit"]))
    assert readings == {
        "s-1": [(1, "C"), (2, "C"), (3, "C")],
        "s-2": [(1, "F"), (2, "F"), (3, "F")],
        "s-3": [(1, "K"), (2, "K"), (3, "K")],
    }


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_stopping_a_periodic_agent_interrupts_its_wait(execution: str) -> None:
    # the interval is an hour: only an interruptible wait stops before the stop timeout,
    # after which a thread would be STUCK and a process SIGTERMed
    orch = Orchestrator(stop_timeout=WAIT)
    orch.register_agent(SlowPeriodic, "slow", execution=execution)
    with running(orch):
        first_step = orch.receive(WAIT)  # stepped once: now in the hour-long wait
        assert first_step is not None and first_step.body == 1
        assert orch.stop("slow") == AgentState.STOPPED
        ended = wait_event(orch, E.AGENT_TERMINATED, "slow")
    assert ended.data["outcome"] == "stopped" and ended.data["stop_stage"] == "cooperative"
    assert ended.data["exit_code"] == 0


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_on_stop_unblocks_execute_and_on_close_runs_last(execution: str) -> None:
    orch = Orchestrator(stop_timeout=WAIT)
    orch.register_agent(Blocked, "blocked", execution=execution)
    with running(orch):
        assert orch.receive(WAIT).body == "blocked"  # type: ignore[union-attr]
        assert orch.stop("blocked") == AgentState.STOPPED
        ended = first(orch.history(), E.AGENT_TERMINATED, "blocked")
        assert ended.data["stop_stage"] == "cooperative"  # never escalated
        rest = [orch.receive(WAIT), orch.receive(WAIT)]
    assert [m.body for m in rest if m is not None] == ["unblocked", "closed"]


@pytest.mark.parametrize("execution", ["thread", "process"])
def test_messages_both_ways(execution: str) -> None:
    orch = Orchestrator()
    seen = []
    orch.on_message(seen.append)
    orch.register_agent(Echo, "echo", execution=execution)
    with running(orch):
        wait_event(orch, E.AGENT_READY, "echo")
        orch.send("echo", {"n": 1})
        orch.send("echo", [2])
        first_back = orch.receive(WAIT)
        second_back = orch.receive(WAIT)
    assert first_back is not None and second_back is not None
    assert (first_back.body["echo"], second_back.body["echo"]) == ({"n": 1}, [2])
    assert first_back.agent == "echo"
    import os

    assert (first_back.body["pid"] == os.getpid()) == (execution == "thread")


def test_operator_restart_starts_a_new_generation() -> None:
    orch = Orchestrator()
    orch.register_agent(Idle, "svc", execution="process", restart=RestartPolicy.never())
    with running(orch):
        wait_event(orch, E.AGENT_READY, "svc")
        orch.restart("svc")
        restarted = wait_event(orch, E.AGENT_RESTARTED, "svc")
        wait_event(orch, E.AGENT_READY, "svc", generation=2)
        assert restarted.data["cause"] == "requested"
        assert orch.status("svc")["generation"] == 2
        ended = first(orch.history(), E.AGENT_TERMINATED, "svc", generation=1)
        assert ended.seq < restarted.seq and ended.data["outcome"] == "stopped"


def test_thread_that_ignores_stop_is_reported_stuck_until_it_ends() -> None:
    orch = Orchestrator(stop_timeout=0.2, run_mode=RunMode.DAEMON)
    orch.register_agent(Deaf, "deaf")
    with running(orch):
        assert orch.receive(WAIT) is not None  # in execute(), which ignores stops
        assert orch.stop("deaf") == AgentState.STUCK
        stuck = wait_event(orch, E.AGENT_STUCK, "deaf")
        assert "ignored a stop" in stuck.data["message"]
        status = orch.status("deaf")
        assert status["state"] == "STUCK" and status["stuck"][0]["generation"] == 1
        gate("deaf").set()  # it ends after all: reported, and the agent is STOPPED
        late = wait_event(orch, E.AGENT_TERMINATED, "deaf")
        assert late.data["outcome"] == "stopped late"
        wait_state(orch, "deaf", AgentState.STOPPED)


def test_events_reach_the_store_event_log(store_path) -> None:  # SQLite and PostgreSQL
    location = store_path
    orch = Orchestrator(store=str(location))
    orch.register_agent(Quick, "logged")
    orch.simple_join(handle_signals=False)
    store = open_store(location)
    try:
        rows = store.list_events(limit=100)
    finally:
        store.close()
    types = [r.type for r in rows if r.subject == "logged"]
    assert types[:2] == ["baton.agent.registered", "baton.agent.started"]
    assert "baton.agent.terminated" in types
    assert any(r.type == "baton.agents.all_terminated" for r in rows)
    assert all(r.source == "baton.agents" for r in rows)
