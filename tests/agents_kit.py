"""Agent classes and helpers for the agent tests. Process agents are pickled by reference,
so every class here lives at module level in a module the children can import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from baton.agents import (
    Agent,
    AgentEvent,
    EventType,
    LoopingAgent,
    Orchestrator,
    PeriodicAgent,
    RecoverableError,
)

WAIT = 20.0  # generous: a slow shared machine must never fail a test by its clock

# Thread agents hold here until a test releases them (keyed by agent name: a gate stays open,
# so each test uses names of its own).
GATES: dict[str, threading.Event] = {}


def gate(name: str) -> threading.Event:
    return GATES.setdefault(name, threading.Event())


class Quick(Agent):
    """Returns at once (after `seconds`), or fails when `fail` is set."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        seconds: float = 0.0
        fail: bool = False

    def execute(self) -> None:
        if self.config.seconds:
            self.wait(self.config.seconds)
        if self.config.fail:
            raise RuntimeError(f"{self.name} failed on purpose")


class Idle(Agent):
    """Runs until asked to stop."""

    def execute(self) -> None:
        self.stopping.wait()


class Gated(Agent):
    """Thread agent: runs until the test opens its gate (or a stop comes)."""

    def execute(self) -> None:
        door = gate(self.name)
        while not door.wait(0.05):
            if self.stopping.is_set():
                return


class Echo(Agent):
    """Sends back every inbox message, tagged with where it ran."""

    def execute(self) -> None:
        while not self.stopping.is_set():
            message = self.receive(timeout=None)
            if message is None:
                return
            self.send({"echo": message, "pid": os.getpid()})


class Counter(LoopingAgent):
    """Counts to `limit`; a RecoverableError at `recover_at`, a fatal one at `die_at`."""

    class Config(BaseModel):
        limit: int = 5
        recover_at: int | None = None
        die_at: int | None = None

    def step(self, iteration: int) -> None:
        if iteration == self.config.recover_at:
            raise RecoverableError(f"hiccup at {iteration}")
        if iteration == self.config.die_at:
            raise ValueError(f"fatal at {iteration}")
        self.send(iteration)


class Sensor(PeriodicAgent):
    """A virtual sensor: one class, many configs."""

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        interval: float = Field(0.05, gt=0)
        unit: str = "C"
        limit: int | None = None
        api_token: SecretStr = SecretStr("")
        db_password: str = ""

    def step(self, iteration: int) -> None:
        self.send({"sensor": self.name, "reading": iteration, "unit": self.config.unit})


class SlowPeriodic(PeriodicAgent):
    """A long interval: stopping it shows the wait is interruptible."""

    interval = 3600.0

    def step(self, iteration: int) -> None:
        self.send(iteration)


class Beating(Agent):
    """Heartbeats, then (when `hang_after` beats have gone by) stops beating and ignores
    stop requests: it looks hung."""

    class Config(BaseModel):
        hang_after: int = 3
        release: str | None = None  # thread agents: a gate that ends the hang

    def execute(self) -> None:
        for _ in range(self.config.hang_after):
            self.heartbeat()
            time.sleep(0.02)
        door = gate(self.config.release) if self.config.release else None
        while True:  # hung: no heartbeats, stop requests ignored
            if door is not None and door.wait(0.05):
                return
            time.sleep(0.05)


class Stubborn(Agent):
    """Process agent that ignores SIGTERM and stop requests, with a child process of its
    own (its pid sent to the orchestrator)."""

    def setup(self) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        self.child = subprocess.Popen(
            [sys.executable, "-c", "import signal,time; signal.signal(15, 1); time.sleep(300)"]
        )
        self.send({"child": self.child.pid})

    def execute(self) -> None:
        self.send({"executing": True})
        while True:
            time.sleep(0.05)


class WithChild(Agent):
    """Process agent with a child process of its own; stops cooperatively, leaving the
    child behind (the supervisor must not)."""

    def setup(self) -> None:
        self.child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        self.send({"child": self.child.pid})

    def execute(self) -> None:
        self.stopping.wait()


class Blocked(Agent):
    """Blocks on something `stopping` cannot reach; its on_stop hook unblocks it."""

    def setup(self) -> None:
        self.unblock = threading.Event()

    def execute(self) -> None:
        self.send("blocked")
        self.unblock.wait()
        self.send("unblocked")

    def on_stop(self) -> None:
        self.unblock.set()

    def on_close(self) -> None:
        self.send("closed")


class Deaf(Agent):
    """Thread agent that ignores stop requests until its gate opens."""

    def execute(self) -> None:
        self.send("executing")
        gate(self.name).wait()


class Loader(Agent):
    """Completes after a short pause; dependants may wait for that."""

    def execute(self) -> None:
        self.wait(0.05)


class NotReadyYet(Agent):
    """Declares READY itself, later, when its gate opens; then finishes."""

    auto_ready = False

    def execute(self) -> None:
        gate(self.name).wait(WAIT)
        self.ready()
        self.wait(0.05)


class NotAnAgent:
    def execute(self) -> None:
        pass


# -- helpers ---------------------------------------------------------------------------------
def kinds(events: list[AgentEvent], agent: str | None = None) -> list[str]:
    return [e.type.name for e in events if agent is None or e.agent == agent]


def first(events: list[AgentEvent], kind: EventType, agent: str, **where: Any) -> AgentEvent:
    for e in events:
        matches = all(e.data.get(k) == v for k, v in where.items())
        if e.type == kind and e.agent == agent and matches:
            return e
    raise AssertionError(f"no {kind.name} for {agent} {where} in {kinds(events)}")


def wait_event(
    orchestrator: Orchestrator, kind: EventType, agent: str | None = None, after: int = 0, **where
) -> AgentEvent:
    event = orchestrator.events.wait_for(
        kind,
        agent,
        timeout=WAIT,
        after=after,
        where=lambda e: all(e.data.get(k) == v for k, v in where.items()),
    )
    assert event is not None, f"no {kind.name} for {agent} {where}: {kinds(orchestrator.history())}"
    return event


def wait_state(orchestrator: Orchestrator, name: str, state: str) -> None:
    deadline = time.monotonic() + WAIT
    while orchestrator.state(name) != state:
        assert time.monotonic() < deadline, f"{name} is {orchestrator.state(name)}, not {state}"
        time.sleep(0.01)


@contextmanager
def running(orchestrator: Orchestrator) -> Iterator[Orchestrator]:
    """Start, and always shut down at the end (quickly) so no test leaks agents."""
    orchestrator.start()
    try:
        yield orchestrator
    finally:
        orchestrator.shutdown(timeout=2.0)


class FailOnGate(Agent):
    """READY at once; fails when its gate opens."""

    def execute(self) -> None:
        while not gate(self.name).wait(0.05):
            if self.stopping.is_set():
                return
        raise RuntimeError(f"{self.name} lost its connection")


class FailsInSetup(Agent):
    def setup(self) -> None:
        raise ConnectionError("cannot reach the database")

    def execute(self) -> None:
        pass
