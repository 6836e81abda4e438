"""Bad input gets a clear, typed error; the orchestrator and the other agents carry on."""

from __future__ import annotations

import pytest

from agents_kit import (
    FailOnGate,
    FailsInSetup,
    Idle,
    NotAnAgent,
    Quick,
    Sensor,
    first,
    gate,
    kinds,
    running,
    wait_event,
    wait_state,
)
from baton import BatonError
from baton.agents import (
    Agent,
    AgentConfig,
    AgentNotRunning,
    AgentState,
    Dep,
    DependencyCycle,
    DuplicateAgent,
    EventType,
    InvalidAgentOption,
    NotAnAgentClass,
    Orchestrator,
    OrchestratorConfigInvalid,
    OrchestratorStateError,
    RunMode,
    UnknownAgent,
    UnknownDependency,
)

pytestmark = pytest.mark.timeout(60)

E = EventType


def test_classes_that_are_not_agents_are_refused() -> None:
    orch = Orchestrator()
    with pytest.raises(NotAnAgentClass, match="NotAnAgent is not an Agent class") as caught:
        orch.register_agent(NotAnAgent, "x")  # type: ignore[arg-type]
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, BatonError)
    with pytest.raises(NotAnAgentClass, match="a NotAnAgent instance"):
        orch.register_agent(NotAnAgent(), "y")  # type: ignore[arg-type]
    with pytest.raises(InvalidAgentOption, match="must override execute"):
        orch.register_agent(Agent, "z")

    def make() -> type[Agent]:
        class Local(Agent):
            def execute(self) -> None:
                pass

        return Local

    with pytest.raises(InvalidAgentOption, match="defined inside a function"):
        orch.register_agent(make(), "local", execution="process")
    with pytest.raises(InvalidAgentOption, match="execution"):
        orch.register_agent(Quick, "fiber", execution="fiber")
    with pytest.raises(InvalidAgentOption, match="name"):
        orch.register_agent(Quick, "has spaces")
    orch.register_agent(Quick, "ok")
    with pytest.raises(DuplicateAgent, match="'ok' is already registered"):
        orch.register_agent(Idle, "ok")
    assert orch.names == ["ok"]


def test_unknown_orchestrator_settings_are_errors_before_anything_starts() -> None:
    with pytest.raises(OrchestratorConfigInvalid, match="max_wrkers: Extra inputs"):
        Orchestrator.Config(max_wrkers=2)
    with pytest.raises(OrchestratorConfigInvalid, match="max_workers"):
        Orchestrator(max_workers=0)
    with pytest.raises(OrchestratorConfigInvalid, match="run_mode"):
        Orchestrator(config={"run_mode": "forever"})


def test_a_bad_agent_config_fails_that_agent_only() -> None:
    orch = Orchestrator()
    orch.register_agent(Sensor, "bad-sensor", config={"interval": -1, "colour": "red"})
    orch.register_agent(Sensor, "good-sensor", config={"interval": 0.01, "limit": 2})
    orch.register_agent(Quick, "needs-bad", depends_on=["bad-sensor"])
    states = orch.simple_join(handle_signals=False)
    assert states == {
        "bad-sensor": AgentState.FAILED,
        "good-sensor": AgentState.COMPLETED,
        "needs-bad": AgentState.SKIPPED,
    }
    error = first(orch.history(), E.AGENT_ERROR, "bad-sensor")
    assert error.data["type"] == "AgentConfigInvalid"
    assert "agent 'bad-sensor'" in error.data["message"]
    paths = {p["path"] for p in error.data["problems"]}
    assert paths == {"interval", "colour"}
    assert "AGENT_STARTED" not in kinds(orch.history(), "bad-sensor")
    assert "AGENT_STARTED" not in kinds(orch.history(), "needs-bad")


def test_a_config_that_cannot_reach_a_process_fails_that_agent_only() -> None:
    orch = Orchestrator()
    orch.register_agent(Quick, "fine")
    orch.register_agent(
        Idle, "unpicklable", execution="process", config=AgentConfig(callback=lambda: 1)
    )
    states = orch.simple_join(handle_signals=False)
    assert states == {"fine": AgentState.COMPLETED, "unpicklable": AgentState.FAILED}
    error = first(orch.history(), E.AGENT_ERROR, "unpicklable")
    assert error.data["stage"] == "start"
    assert "cannot start its process" in orch.status("unpicklable")["reason"]


def test_cycles_and_unknown_dependencies_are_reported_at_start() -> None:
    orch = Orchestrator()
    orch.register_agent(Quick, "a", depends_on=["b"])
    orch.register_agent(Quick, "b", depends_on=["c"])
    orch.register_agent(Quick, "c", depends_on=[Dep("a", until="completed")])
    orch.register_agent(Quick, "free")
    with pytest.raises(DependencyCycle, match="a -> b -> c -> a") as caught:
        orch.start()
    assert caught.value.cycle == ["a", "b", "c", "a"]
    assert set(orch.states().values()) == {AgentState.REGISTERED}  # nothing started

    other = Orchestrator()
    other.register_agent(Quick, "a", depends_on=["ghost"])
    with pytest.raises(UnknownDependency, match="'a' depends on 'ghost', which is not registered"):
        other.start()


def test_registering_while_running_checks_dependencies_at_once() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON)
    orch.register_agent(Idle, "base")
    with running(orch):
        with pytest.raises(UnknownDependency, match="ghost"):
            orch.register_agent(Quick, "late", depends_on=["ghost"])
        with pytest.raises(DependencyCycle, match="self -> self"):
            orch.register_agent(Quick, "self", depends_on=["self"])
        orch.register_agent(Quick, "later", depends_on=["base"])
        wait_event(orch, E.AGENT_TERMINATED, "later", outcome="completed")
        assert orch.state("base") == AgentState.RUNNING


def test_a_failing_dependency_stops_or_skips_its_dependents() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON)
    orch.register_agent(FailOnGate, "primary")  # a thread: the test opens its gate
    orch.register_agent(Idle, "api", depends_on=["primary"])  # default: stop with it
    orch.register_agent(Idle, "report", depends_on=["api"], execution="process")
    orch.register_agent(Idle, "web", depends_on=["primary"], on_dependency_failure="keep_running")
    orch.register_agent(Idle, "nightly", depends_on=[Dep("primary", until="completed")])
    orch.register_agent(FailsInSetup, "schema")
    orch.register_agent(Idle, "migrations", depends_on=["schema"])
    with running(orch):
        for name in ("api", "report", "web"):
            wait_event(orch, E.AGENT_READY, name)
        wait_state(orch, "migrations", AgentState.SKIPPED)  # schema never became READY
        assert orch.state("nightly") == AgentState.WAITING
        gate("primary").set()
        wait_state(orch, "primary", AgentState.FAILED)
        for name in ("api", "report"):
            wait_state(orch, name, AgentState.STOPPED)
            assert orch.status(name)["blocked_by"] in ("primary", "api")
            ended = first(orch.history(), E.AGENT_TERMINATED, name)
            assert ended.data["stop_reason"] == "dependency"
        wait_state(orch, "nightly", AgentState.SKIPPED)
        assert orch.state("web") == AgentState.RUNNING
        failed = first(orch.history(), E.AGENT_ERROR, "primary")
        assert "lost its connection" in failed.data["traceback"]
        setup_error = first(orch.history(), E.AGENT_ERROR, "schema")
        assert setup_error.data["type"] == "ConnectionError"
        for never in ("nightly", "migrations"):
            assert "AGENT_STARTED" not in kinds(orch.history(), never)


def test_unknown_names_and_wrong_calls_are_clear_and_harmless() -> None:
    orch = Orchestrator(run_mode=RunMode.DAEMON)
    orch.register_agent(Idle, "svc")
    orch.register_agent(Quick, "done")
    with pytest.raises(OrchestratorStateError, match="before start"):
        orch.join()
    seen: list[str] = []

    def broken_callback(event) -> None:  # type: ignore[no-untyped-def]
        seen.append(event.type.name)
        raise RuntimeError("a callback bug")

    orch.subscribe(broken_callback)
    with running(orch):
        with pytest.raises(OrchestratorStateError, match="already called"):
            orch.start()
        for call in (
            lambda: orch.stop("nope"),
            lambda: orch.restart("nope"),
            lambda: orch.start("nope"),
            lambda: orch.send("nope", 1),
            lambda: orch.status("nope"),
        ):
            with pytest.raises(UnknownAgent, match="no agent named 'nope'; registered: done, svc"):
                call()
        wait_event(orch, E.AGENT_TERMINATED, "done")
        with pytest.raises(AgentNotRunning, match="'done' is COMPLETED"):
            orch.send("done", "hello")
        wait_event(orch, E.AGENT_READY, "svc")
        assert orch.state("svc") == AgentState.RUNNING
    assert "AGENT_TERMINATED" in seen  # callbacks kept being called after raising
    with pytest.raises(OrchestratorStateError, match="shut down"):
        orch.register_agent(Quick, "too-late")
