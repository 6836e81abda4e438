"""What a user declares: the orchestrator's config, run modes, restart policies, dependencies."""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from baton.agents.errors import OrchestratorConfigInvalid, validation_problems
from baton.core.retry import backoff_delay

# Where `baton agents` looks when neither --socket nor BATON_AGENTS_SOCKET says otherwise.
DEFAULT_SOCKET = ".baton/agents/agents.sock"


class RunMode(StrEnum):
    STOP_ON_EMPTY = "stop_on_empty"  # exit once every agent has ended and nothing is queued
    DAEMON = "daemon"  # stay up until shutdown(), a signal, or `baton agents shutdown`


class Execution(StrEnum):
    THREAD = "thread"
    PROCESS = "process"


class Restart(StrEnum):
    NEVER = "never"
    ON_FAILURE = "on-failure"  # after an error, a crash, a signal, a missed heartbeat
    ALWAYS = "always"  # also after execute() returns; never after a requested stop


class OnDependencyFailure(StrEnum):
    STOP = "stop"  # running dependents are stopped too
    KEEP_RUNNING = "keep_running"  # running dependents carry on; unstarted ones never start


class RestartPolicy(BaseModel):
    """When an ended agent is started again, how often, and after what pause.

    At most `max_restarts` restarts within any `window` seconds; one more failure ends the
    agent FAILED for good. The pause before restart n (counted within the window) is
    `min(max_delay, initial_delay * backoff ** (n - 1))`, drawn from [0, that] with `jitter`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: Restart = Restart.ON_FAILURE
    max_restarts: int = Field(5, ge=0)
    window: float = Field(60.0, gt=0)
    initial_delay: float = Field(0.1, ge=0)
    backoff: float = Field(2.0, ge=1)
    max_delay: float = Field(30.0, ge=0)
    jitter: bool = False

    def delay(self, restart_number: int) -> float:
        return backoff_delay(
            max(restart_number, 1), self.initial_delay, self.backoff, self.max_delay, self.jitter
        )

    @classmethod
    def never(cls) -> RestartPolicy:
        return cls(when=Restart.NEVER)

    @classmethod
    def coerce(cls, value: RestartPolicy | str | Restart | None) -> RestartPolicy:
        """`"on-failure"`, `Restart.ALWAYS` or None (never) as a policy with the defaults."""
        if value is None:
            return cls.never()
        if isinstance(value, RestartPolicy):
            return value
        return cls(when=Restart(value))


@dataclass(frozen=True, slots=True)
class Dep:
    """A dependency: start once `name` is READY (default) or once it has COMPLETED.

    A plain string in `depends_on` means `Dep(name)`. `until="completed"` suits a loader
    that must finish before its readers start.
    """

    name: str
    until: Literal["ready", "completed"] = "ready"

    def __post_init__(self) -> None:
        if self.until not in ("ready", "completed"):
            raise ValueError(f"Dep({self.name!r}): until must be 'ready' or 'completed'")

    @classmethod
    def coerce(cls, value: Dep | str) -> Dep:
        return value if isinstance(value, Dep) else cls(value)


class OrchestratorConfig(BaseModel):
    """The supervisor's settings. Unknown keys are errors, raised before anything starts."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    run_mode: RunMode = RunMode.STOP_ON_EMPTY
    max_workers: int | None = Field(None, ge=1, description="Agents running at once; None: no cap")
    start_timeout: float = Field(30.0, gt=0, description="Seconds from spawn to READY")
    stop_timeout: float = Field(10.0, gt=0, description="Cooperative stop before escalating")
    kill_timeout: float = Field(5.0, gt=0, description="SIGTERM to SIGKILL, process agents")
    control_socket: Path | None = None
    history_size: int = Field(1000, ge=1)
    message_queue_size: int = Field(10_000, ge=1)
    store: Any = None  # a store URL or path, or a Store, to append events to the event log
    start_method: Literal["forkserver", "spawn"] = "forkserver"
    source: str = Field("baton.agents", min_length=1, description="CloudEvents source")

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise OrchestratorConfigInvalid(validation_problems(exc)) from None

    @field_validator("store")
    @classmethod
    def _store_kind(cls, value: Any) -> Any:
        if value is None or isinstance(value, str | os.PathLike):
            return value
        if callable(getattr(value, "append_events", None)):
            return value
        raise ValueError("must be a store URL or path, or a Store with append_events()")
