"""`Agent`: the base class of everything the supervisor runs, in a thread or a process.

An agent's life: `setup()` → READY → `execute()` → `on_close()`. `on_stop()` is called from
another thread when a stop is asked for, to interrupt whatever `execute()` is blocked on;
`self.stopping` is set at the same moment.
"""

from __future__ import annotations

import queue
import threading
import time
import traceback
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

# Put in an inbox when a stop is asked for, so that a blocked receive() returns at once.
WAKE = "__baton_agents_wake__"


class AgentConfig(BaseModel):
    """The config model of an agent that declares none: any keys, kept as given."""

    model_config = ConfigDict(extra="allow")


class Link:
    """What connects a running agent to its supervisor: thread and process versions differ
    only in how `notify` travels."""

    def __init__(self, heartbeat_every: float | None) -> None:
        self.stopping = threading.Event()
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.heartbeat_every = heartbeat_every
        self.agent: Agent | None = None

    def notify(self, kind: str, body: Any = None) -> None:
        raise NotImplementedError

    def request_stop(self, call_hook: bool = True) -> None:
        """Set `stopping` and wake a blocked receive(); then run the agent's on_stop hook
        unless the caller runs it elsewhere (`call_on_stop`)."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.inbox.put(WAKE)
        if call_hook:
            self.call_on_stop()

    def call_on_stop(self) -> None:
        agent = self.agent
        if agent is not None and has_on_stop(agent):
            try:
                agent.on_stop()
            except Exception as exc:
                self.notify("error", describe_error(exc, recoverable=True, hook="on_stop"))


def has_on_stop(agent: Agent) -> bool:
    return type(agent).on_stop is not Agent.on_stop


def describe_error(exc: BaseException, **extra: Any) -> dict[str, Any]:
    return {
        "type": type(exc).__qualname__,
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)),
        **extra,
    }


class Agent:
    """Subclass and override `execute()` (and `setup()`, `on_stop()`, `on_close()` as needed).

    Declare a pydantic model as the nested class `Config` to have each registration's config
    validated before the agent starts; `self.config` is then an instance of it. Instances are
    made by the supervisor: do initialisation in `setup()`, not in `__init__`.
    """

    Config: ClassVar[type[BaseModel]] = AgentConfig
    # READY once setup() returns; set False and call self.ready() yourself when later
    auto_ready: ClassVar[bool] = True

    def __init__(self, *, name: str, config: BaseModel, link: Link, generation: int = 1) -> None:
        self.name = name
        self.config: Any = config
        self.generation = generation  # 1 for the first start, +1 for each restart
        self._link = link
        self._ready_sent = False
        self._last_beat = 0.0
        link.agent = self

    # -- hooks ----------------------------------------------------------------------------
    def setup(self) -> None:
        """Prepare (connect, load). Raising here fails the start."""

    def execute(self) -> None:
        """The agent's work. Returning ends the agent COMPLETED; raising ends it FAILED."""
        raise NotImplementedError(f"{type(self).__qualname__} must override execute()")

    def on_stop(self) -> None:
        """Called from another thread once a stop is asked for: unblock execute() here
        (close a socket, cancel a wait). Keep it short; `self.stopping` is already set."""

    def on_close(self) -> None:
        """Called last, in the agent's own thread, however execute() ended: release resources."""

    # -- talking to the supervisor --------------------------------------------------------
    @property
    def stopping(self) -> threading.Event:
        """Set once a stop is asked for; `self.stopping.wait(t)` is an interruptible sleep."""
        return self._link.stopping

    @property
    def inbox(self) -> queue.Queue[Any]:
        """Messages sent with `orchestrator.send(name, message)`; prefer `receive()`."""
        return self._link.inbox

    def ready(self) -> None:
        """Declare this agent READY: agents that depend on it may start."""
        if not self._ready_sent:
            self._ready_sent = True
            self._link.notify("ready")

    def heartbeat(self) -> None:
        """Tell the supervisor this agent is alive (needed when a heartbeat timeout is set)."""
        self._last_beat = time.monotonic()
        self._link.notify("heartbeat")

    def send(self, message: Any) -> None:
        """Send a message to the orchestrator (its callbacks and `orchestrator.receive()`).
        A process agent's messages must pickle."""
        self._link.notify("message", message)

    def report_error(self, exc: BaseException) -> None:
        """Report an error (AGENT_ERROR, with its traceback) and carry on."""
        self._link.notify("error", describe_error(exc, recoverable=True))

    def receive(self, timeout: float | None = None) -> Any:
        """The next inbox message; None once `timeout` passes or a stop is asked for."""
        inbox = self._link.inbox
        while True:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                if self.stopping.is_set():
                    return None
                try:
                    item = inbox.get(timeout=timeout)
                except queue.Empty:
                    return None
            if item is WAKE:
                if self.stopping.is_set():
                    return None
                continue
            return item

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, returning early (True) when a stop is asked for. While
        heartbeats are watched, beats on the way so that waiting never looks like hanging."""
        deadline = time.monotonic() + max(seconds, 0.0)
        every = self._link.heartbeat_every
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.stopping.is_set()
            if self.stopping.wait(min(left, every) if every else left):
                return True
            self._beat()

    def _beat(self) -> None:
        """A heartbeat at most every `heartbeat_every` seconds; none when none are watched."""
        every = self._link.heartbeat_every
        if every and time.monotonic() - self._last_beat >= every:
            self.heartbeat()
