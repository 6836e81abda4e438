"""What the supervisor keeps per agent: the registration and the current state."""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from baton.agents.agent import Agent
from baton.agents.config import Dep, Execution, OnDependencyFailure, RestartPolicy
from baton.agents.instance import Instance
from baton.agents.states import AgentState


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """A registration, as given to `register_agent` (options already checked)."""

    name: str
    cls: type[Agent]
    config: Any  # as given: a mapping, a model instance, or None
    depends_on: tuple[Dep, ...]
    execution: Execution
    restart: RestartPolicy
    priority: int
    heartbeat_timeout: float | None
    start_timeout: float | None
    stop_timeout: float | None
    on_dependency_failure: OnDependencyFailure
    order: int  # registration order

    @property
    def class_path(self) -> str:
        return f"{self.cls.__module__}:{self.cls.__qualname__}"


@dataclass(slots=True)
class AgentRecord:
    spec: AgentSpec
    state: AgentState = AgentState.REGISTERED
    reason: str | None = None  # why it is in this state, in words
    generation: int = 0
    instance: Instance | None = None
    config: BaseModel | None = None  # validated, on the first start
    restarts: deque[float] = field(default_factory=deque)  # automatic ones, monotonic times
    total_restarts: int = 0
    backoff_until: float | None = None
    queued_seq: int = 0
    completed_once: bool = False
    blocked_by: str | None = None  # a dependency whose failure ended or skipped this agent
    pending_restart: dict[str, Any] | None = None  # emitted as AGENT_RESTARTED at the spawn
    last_exit: dict[str, Any] | None = None
    last_error: dict[str, Any] | None = None
    stuck: list[Instance] = field(default_factory=list)  # threads that ignored a stop
    waiters: list[Future[Any]] = field(default_factory=list)  # stop()/restart() callers

    @property
    def name(self) -> str:
        return self.spec.name
