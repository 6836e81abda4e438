"""One running generation of an agent, as the supervisor sees it, and the lifecycle that runs
inside it (the same code in a thread and in a child process)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from baton.agents.agent import Agent, Link, describe_error


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything an agent needs to start; pickled to a process agent."""

    cls: type[Agent]
    name: str
    config: BaseModel
    generation: int
    heartbeat_every: float | None  # automatic heartbeats; None when nobody watches them
    orphan_grace: float  # a process agent whose supervisor vanished exits after this


def run_lifecycle(launch: Launch, link: Link) -> dict[str, Any]:
    """setup → READY → execute → on_close. Returns {"ok": bool, "error": {...} | None}."""
    error: dict[str, Any] | None = None
    agent: Agent | None = None
    try:
        agent = launch.cls(
            name=launch.name, config=launch.config, link=link, generation=launch.generation
        )
        agent.setup()
        if launch.cls.auto_ready:
            agent.ready()
        if not link.stopping.is_set():
            agent.execute()
    except SystemExit as exc:  # sys.exit() in an agent ends it; non-zero codes are failures
        if exc.code not in (None, 0):
            error = describe_error(exc, exit_code=exc.code)
    except BaseException as exc:
        error = describe_error(exc)
    finally:
        if agent is not None:
            try:
                agent.on_close()
            except Exception as exc:
                error = error or describe_error(exc, hook="on_close")
    return {"ok": error is None, "error": error}


class Instance:
    """Supervisor-side state of one generation. Subclasses know how to reach their agent."""

    execution: str
    pid: int
    native_thread_id: int | None = None

    def __init__(self, launch: Launch) -> None:
        self.name = launch.name
        self.generation = launch.generation
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.ready_at: float | None = None
        self.last_beat = self.started_mono
        self.last_beat_wall: float | None = None
        self.beat_reported = float("-inf")  # when the last AGENT_HEARTBEAT was emitted
        self.result: dict[str, Any] | None = None  # the agent's own word on how it ended
        self.stop_reason: str | None = None
        self.stop_stage: str | None = None  # cooperative, SIGTERM, SIGKILL, stuck
        self.stop_deadline: float | None = None
        self.start_deadline: float | None = None
        self.ended = False

    def request_stop(self) -> None:
        raise NotImplementedError

    def deliver(self, message: Any) -> None:
        raise NotImplementedError

    def is_alive(self) -> bool:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"generation": self.generation, "pid": self.pid}
