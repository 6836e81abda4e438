"""Errors the agent supervisor raises, each naming the agent and what to change."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from baton.core.errors import BatonError


class AgentsError(BatonError):
    """Base class of the supervisor's errors."""


class RecoverableError(BatonError):
    """Raise from a `LoopingAgent.step` to report a problem and carry on with the next
    iteration (other exceptions end the agent as failed unless listed in `recoverable`)."""


class NotAnAgentClass(AgentsError, TypeError):
    def __init__(self, name: str, got: Any) -> None:
        self.name = name
        self.got = got
        what = got.__qualname__ if isinstance(got, type) else f"a {type(got).__name__} instance"
        super().__init__(
            f"agent {name!r}: {what} is not an Agent class; pass a subclass of "
            f"baton.agents.Agent, LoopingAgent or PeriodicAgent"
        )


class DuplicateAgent(AgentsError, ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"an agent named {name!r} is already registered; names must be unique")


class UnknownAgent(AgentsError, LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        hint = f"; registered: {', '.join(self.known)}" if self.known else "; none are registered"
        super().__init__(f"no agent named {name!r}{hint}")


class InvalidAgentOption(AgentsError, ValueError):
    """A `register_agent` option that cannot be honoured (bad execution mode, ...)."""

    def __init__(self, name: str, option: str, problem: str) -> None:
        self.name = name
        self.option = option
        self.problem = problem
        super().__init__(f"agent {name!r}: {option} {problem}")


class ConfigInvalid(AgentsError, ValueError):
    """A config failed its model. `problems` holds (field path, message) pairs."""

    def __init__(self, owner: str, problems: Sequence[tuple[str, str]]) -> None:
        self.owner = owner
        self.problems = list(problems)
        listed = "; ".join(f"{path}: {message}" for path, message in self.problems)
        super().__init__(f"{owner}: invalid config: {listed}")


class AgentConfigInvalid(ConfigInvalid):
    """An agent's config does not fit its class's `Config` model: it is never started."""

    def __init__(self, agent: str, problems: Sequence[tuple[str, str]]) -> None:
        self.agent = agent
        super().__init__(f"agent {agent!r}", problems)


class OrchestratorConfigInvalid(ConfigInvalid):
    """`Orchestrator.Config` got an unknown key or a bad value; nothing was started."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__("Orchestrator.Config", problems)


def validation_problems(exc: Any) -> list[tuple[str, str]]:
    """(dotted field path, message) for each error of a pydantic ValidationError."""
    return [(".".join(str(p) for p in e["loc"]) or "(root)", e["msg"]) for e in exc.errors()]


class DependencyError(AgentsError):
    """The dependency graph cannot be started."""


class UnknownDependency(DependencyError, LookupError):
    def __init__(self, agent: str, dependency: str, known: Iterable[str]) -> None:
        self.agent = agent
        self.dependency = dependency
        self.known = sorted(known)
        super().__init__(
            f"agent {agent!r} depends on {dependency!r}, which is not registered; "
            f"registered: {', '.join(self.known) or 'none'}"
        )


class DependencyCycle(DependencyError):
    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)  # first name repeated at the end
        super().__init__(f"agents depend on each other in a cycle: {' -> '.join(self.cycle)}")


class OrchestratorStateError(AgentsError):
    """The orchestrator is not in a state that allows this call (started twice, shut down)."""


class AgentNotRunning(AgentsError):
    def __init__(self, name: str, state: str) -> None:
        self.name = name
        self.state = state
        super().__init__(f"agent {name!r} is {state}, not running; it has no inbox to deliver to")


class ControlSocketError(AgentsError):
    """The control socket cannot be created safely where it was asked for."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"control socket {path}: {problem}")


class ControlError(AgentsError):
    """The orchestrator answered a control request with an error (raised by the client)."""

    def __init__(self, type: str, message: str) -> None:
        self.type = type
        self.message = message
        super().__init__(f"{type}: {message}")


class ControlUnavailable(AgentsError):
    """No orchestrator answers on the control socket."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"no orchestrator answers on {path}: {reason}")
