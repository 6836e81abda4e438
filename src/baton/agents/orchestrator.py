"""`Orchestrator`: register agents, start them in dependency order, keep them running."""

from __future__ import annotations

import atexit
import itertools
import queue
import re
import signal
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from baton.agents import documents, processes
from baton.agents.agent import Agent
from baton.agents.config import (
    Dep,
    Execution,
    OnDependencyFailure,
    OrchestratorConfig,
    Restart,
    RestartPolicy,
)
from baton.agents.control import BadRequest, ControlServer
from baton.agents.errors import (
    AgentNotRunning,
    DependencyCycle,
    DuplicateAgent,
    InvalidAgentOption,
    NotAnAgentClass,
    OrchestratorStateError,
    UnknownAgent,
    UnknownDependency,
)
from baton.agents.events import (
    AgentEvent,
    AgentMessage,
    Callback,
    EventManager,
    EventType,
    Subscription,
)
from baton.agents.looping import LoopingAgent
from baton.agents.records import AgentSpec
from baton.agents.states import ACTIVE, AgentState
from baton.agents.stats import StatsSampler
from baton.agents.supervisor import Supervisor

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


class Orchestrator:
    """Supervises agents: threads or processes, started once their dependencies are READY,
    at most `max_workers` at a time, restarted by their policies, watched by heartbeats.

        orchestrator = Orchestrator(config=Orchestrator.Config(max_workers=4))
        orchestrator.register_agent(Sensor, "sensor-1", config={"interval": 0.5})
        orchestrator.simple_join()
    """

    Config = OrchestratorConfig

    def __init__(
        self, config: OrchestratorConfig | Mapping[str, Any] | None = None, **options: Any
    ) -> None:
        if config is None or isinstance(config, Mapping):
            config = OrchestratorConfig(**{**dict(config or {}), **options})
        elif options:
            config = OrchestratorConfig(**{**config.model_dump(), **options})
        self.config: OrchestratorConfig = config
        self._store: Any = None
        self._own_store = False
        self.events = EventManager(config.history_size, config.source, self._to_store)
        self._messages: queue.Queue[AgentMessage] = queue.Queue(config.message_queue_size)
        self._supervisor = Supervisor(config, self.events, self._keep_message, self._finished)
        self._control: ControlServer | None = None
        self._stats = StatsSampler()
        self._order = itertools.count(1)
        self._state = "new"  # new → running → closed
        self._closed = threading.Event()
        self._lock = threading.RLock()  # re-entrant: simple_join's signal handler takes it

    # -- registration ---------------------------------------------------------------------
    def register_agent(
        self,
        agent_class: type[Agent],
        name: str,
        config: Mapping[str, Any] | BaseModel | None = None,
        *,
        depends_on: Sequence[str | Dep] = (),
        execution: Execution | str = Execution.THREAD,
        restart: RestartPolicy | str | None = None,
        priority: int = 0,
        heartbeat_timeout: float | None = None,
        start_timeout: float | None = None,
        stop_timeout: float | None = None,
        on_dependency_failure: OnDependencyFailure | str = OnDependencyFailure.STOP,
    ) -> None:
        """Register `agent_class` under `name`. The same class may be registered many
        times with different names and configs. The config is checked against the class's
        `Config` model just before the agent starts: a bad one is an AGENT_ERROR and the
        agent never starts (the others do). `restart` defaults to never."""
        spec = self._spec(
            agent_class,
            name,
            config,
            depends_on,
            execution,
            restart,
            priority,
            heartbeat_timeout,
            start_timeout,
            stop_timeout,
            on_dependency_failure,
        )
        with self._lock:
            if self._state == "closed":
                raise OrchestratorStateError("the orchestrator has shut down; create a new one")
            if name in self._supervisor.records:
                raise DuplicateAgent(name)
            running = self._state == "running"
            if running:
                for dep in spec.depends_on:
                    if dep.name == name:
                        raise DependencyCycle([name, name])
                    if dep.name not in self._supervisor.records:
                        raise UnknownDependency(name, dep.name, self._supervisor.records)
            self._supervisor.add(spec)
            self.events.emit(
                EventType.AGENT_REGISTERED,
                name,
                **{
                    "class": spec.class_path,
                    "execution": spec.execution.value,
                    "depends_on": [d.name for d in spec.depends_on],
                    "priority": spec.priority,
                    "restart": spec.restart.when.value,
                },
            )
            if running:
                if spec.execution is Execution.PROCESS:
                    processes.warm_up(self.config.start_method)
                self._supervisor.admit(name)

    def _spec(
        self,
        agent_class: Any,
        name: Any,
        config: Any,
        depends_on: Sequence[str | Dep],
        execution: Any,
        restart: Any,
        priority: Any,
        heartbeat_timeout: float | None,
        start_timeout: float | None,
        stop_timeout: float | None,
        on_dependency_failure: Any,
    ) -> AgentSpec:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidAgentOption(
                str(name), "name", "must be 1-128 letters, digits, '_', '.', ':' or '-'"
            )
        if not (isinstance(agent_class, type) and issubclass(agent_class, Agent)):
            raise NotAnAgentClass(name, agent_class)
        _check_overrides(name, agent_class)
        mode = _choice(name, "execution", Execution, execution)
        on_failure = _choice(
            name, "on_dependency_failure", OnDependencyFailure, on_dependency_failure
        )
        if isinstance(restart, str) and not isinstance(restart, Restart):
            restart = _choice(name, "restart", Restart, restart)
        try:
            policy = RestartPolicy.coerce(restart)
        except (TypeError, ValueError) as exc:
            raise InvalidAgentOption(name, "restart", str(exc)) from None
        if mode is Execution.PROCESS and "<locals>" in agent_class.__qualname__:
            raise InvalidAgentOption(
                name,
                "execution='process'",
                f"needs a class importable by its module path; {agent_class.__qualname__} "
                "is defined inside a function",
            )
        if not (isinstance(agent_class.Config, type) and issubclass(agent_class.Config, BaseModel)):
            raise InvalidAgentOption(name, "Config", "of the agent class must be a pydantic model")
        for option, value in (
            ("heartbeat_timeout", heartbeat_timeout),
            ("start_timeout", start_timeout),
            ("stop_timeout", stop_timeout),
        ):
            if value is not None and not value > 0:
                raise InvalidAgentOption(name, option, f"must be > 0 seconds, got {value!r}")
        if isinstance(depends_on, str | Dep):
            depends_on = [depends_on]
        try:
            deps = tuple(Dep.coerce(d) for d in depends_on)
        except (TypeError, ValueError) as exc:
            raise InvalidAgentOption(name, "depends_on", str(exc)) from None
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise InvalidAgentOption(name, "priority", f"must be an int, got {priority!r}")
        return AgentSpec(
            name=name,
            cls=agent_class,
            config=config,
            depends_on=deps,
            execution=mode,
            restart=policy,
            priority=priority,
            heartbeat_timeout=heartbeat_timeout,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            on_dependency_failure=on_failure,
            order=next(self._order),
        )

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, name: str | None = None) -> AgentState | None:
        """Start the orchestrator; with a name, start that agent again (it waits for its
        dependencies and a slot like any other). Dependency problems (unknown names,
        cycles) are raised here, before anything starts."""
        if name is not None:
            self._require_running()
            self._record(name)
            return self._supervisor.start_agent(name).result()
        with self._lock:
            if self._state != "new":
                raise OrchestratorStateError(f"start() was already called (it is {self._state})")
            self._supervisor.check_graph()
            if any(
                r.spec.execution is Execution.PROCESS for r in self._supervisor.records.values()
            ):
                processes.warm_up(self.config.start_method)
            self._open_store()
            try:
                if self.config.control_socket is not None:
                    self._control = ControlServer(
                        self.config.control_socket, self._control_request, self._control_shutdown
                    )
            except BaseException:
                self._close_store()
                raise
            self._state = "running"
            self.events.start()
            self._supervisor.start()
            if self._control is not None:
                self._control.serve()
            atexit.register(self._at_exit)
        return None

    def stop(self, name: str, timeout: float | None = None) -> AgentState:
        """Stop one agent (cooperatively, then SIGTERM and SIGKILL for a process; a thread
        that ignores it is reported STUCK). Waits for it; returns its state."""
        self._require_running()
        self._record(name)
        return self._supervisor.stop_agent(name).result(timeout)

    def restart(self, name: str, timeout: float | None = None) -> AgentState:
        """Stop the agent and start it again at once (AGENT_RESTARTED, cause "requested");
        an operator's restart does not count against its restart policy."""
        self._require_running()
        self._record(name)
        return self._supervisor.start_agent(name, restart=True).result(timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the orchestrator has finished: in STOP_ON_EMPTY once every agent has
        ended, in DAEMON after shutdown(). False if `timeout` passed first."""
        if self._state == "new":
            raise OrchestratorStateError("join() before start(): nothing is running")
        return self._closed.wait(timeout)

    def simple_join(self, handle_signals: bool = True) -> dict[str, AgentState]:
        """Start (unless started) and wait until done: the "just run it" call. SIGINT and
        SIGTERM (in the main thread) shut down gracefully. Returns each agent's final state."""
        previous: dict[int, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: self.shutdown(wait=False))
        try:
            if self._state == "new":  # already started is fine: then this only waits
                self.start()
            self.join()
        except KeyboardInterrupt:
            self.shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self.states()

    def shutdown(self, timeout: float | None = None, wait: bool = True) -> None:
        """Stop every agent and close. Each agent gets `timeout` (default: its stop
        timeout) to stop cooperatively; then process agents get SIGTERM and, after
        `kill_timeout`, SIGKILL; threads still running are reported STUCK. From inside an
        agent or an event callback pass wait=False."""
        with self._lock:
            if self._state == "new":
                self._state = "closed"
                self._closed.set()
                return
        if self._state == "running":
            self._supervisor.shutdown(timeout)
        if wait and not _inside_orchestrator():
            self._closed.wait()

    def _finished(self) -> None:
        """The supervisor's loop ended (STOP_ON_EMPTY done, or shut down): close the rest."""
        with self._lock:
            self._state = "closed"
        if self._control is not None:
            self._control.close()
        self.events.close()
        self._close_store()
        atexit.unregister(self._at_exit)
        self._closed.set()

    def _at_exit(self) -> None:
        if self._state == "running":
            self.shutdown(timeout=min(self.config.stop_timeout, 5.0))

    def __enter__(self) -> Orchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # -- messages -------------------------------------------------------------------------
    def send(self, name: str, message: Any) -> None:
        """Put `message` in a running agent's inbox (a process agent's must pickle)."""
        rec = self._record(name)
        with self._supervisor.lock:
            inst = rec.instance
            if inst is None or rec.state not in ACTIVE:
                raise AgentNotRunning(name, rec.state.value)
        inst.deliver(message)

    def receive(self, timeout: float | None = None) -> AgentMessage | None:
        """The next message an agent sent with `self.send(...)`; None after `timeout`.
        The queue keeps the newest `message_queue_size`; older ones are dropped."""
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def on_message(self, callback: Callable[[AgentMessage], None]) -> Subscription:
        """Call `callback(message)` for every message agents send (dispatcher thread)."""
        return self.events.subscribe_messages(callback)

    def _keep_message(self, message: AgentMessage) -> None:
        while True:
            try:
                self._messages.put_nowait(message)
                return
            except queue.Full:
                try:
                    self._messages.get_nowait()  # drop the oldest: the newest matter most
                except queue.Empty:
                    pass

    # -- events ---------------------------------------------------------------------------
    def subscribe(
        self,
        callback: Callback,
        types: Iterable[EventType] | EventType | None = None,
        agent: str | None = None,
    ) -> Subscription:
        return self.events.subscribe(callback, types, agent)

    def history(self, name: str | None = None, limit: int | None = None) -> list[AgentEvent]:
        if name is not None:
            self._record(name)
        return self.events.history(agent=name, limit=limit)

    # -- looking ---------------------------------------------------------------------------
    def state(self, name: str) -> AgentState:
        return self._record(name).state

    def states(self) -> dict[str, AgentState]:
        with self._supervisor.lock:
            return {name: rec.state for name, rec in self._supervisor.records.items()}

    def ps(self) -> list[dict[str, Any]]:
        with self._supervisor.lock:
            return [documents.row(rec) for rec in self._supervisor.records.values()]

    def status(self, name: str) -> dict[str, Any]:
        rec = self._record(name)
        with self._supervisor.lock:
            return documents.status(rec)

    def stats(self) -> list[dict[str, Any]]:
        with self._supervisor.lock:
            running = [documents.running(r) for r in self._supervisor.records.values()]
        return self._stats.sample([r for r in running if r is not None])

    @property
    def names(self) -> list[str]:
        return list(self._supervisor.records)

    def _record(self, name: str) -> Any:
        rec = self._supervisor.records.get(name)
        if rec is None:
            raise UnknownAgent(name, self._supervisor.records)
        return rec

    def _require_running(self) -> None:
        if self._state != "running":
            raise OrchestratorStateError(
                "the orchestrator is not running"
                + (" (it has finished)" if self._state == "closed" else "; call start() first")
            )

    # -- the store ---------------------------------------------------------------------------
    def _open_store(self) -> None:
        location = self.config.store
        if location is None:
            return
        if isinstance(location, str) or hasattr(location, "__fspath__"):
            from baton.store import open_store

            self._store = open_store(location)
            self._own_store = True
        else:
            self._store = location

    def _close_store(self) -> None:
        if self._store is not None and self._own_store:
            self._store.close()
        self._store = None

    def _to_store(self, events: list[Any]) -> Any:
        store = self._store
        return store.append_events(events) if store is not None else None

    # -- the control socket -------------------------------------------------------------------
    def _control_request(self, request: dict[str, Any]) -> Any:
        op = request["op"]
        if op == "ps":
            return self.ps()
        if op == "stats":
            return self.stats()
        if op == "history":
            limit = request.get("limit")
            if limit is not None and not (isinstance(limit, int) and limit > 0):
                raise BadRequest("limit must be a positive integer")
            return [e.to_dict() for e in self.history(request.get("name"), limit)]
        if op in ("status", "start", "stop", "restart", "send"):
            name = request.get("name")
            if not isinstance(name, str):
                raise BadRequest(f'"{op}" needs "name", an agent\'s name')
            if op == "status":
                return self.status(name)
            if op == "send":
                self.send(name, request.get("message"))
                return {"sent": True}
            state = getattr(self, op)(name)
            return {"name": name, "state": str(state), "status": self.status(name)}
        raise BadRequest(
            f"unknown op {op!r}; one of: ps, status, start, stop, restart, history, stats, "
            "send, shutdown"
        )

    def _control_shutdown(self, request: dict[str, Any]) -> Any:
        timeout = request.get("timeout")
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise BadRequest("timeout must be a positive number of seconds")
        self.shutdown(timeout=timeout)
        return {"states": {name: str(state) for name, state in self.states().items()}}


def _choice(name: str, option: str, kind: type[Any], value: Any) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = " or ".join(repr(m.value) for m in kind)
        raise InvalidAgentOption(name, option, f"must be {allowed}, got {value!r}") from None


def _check_overrides(name: str, cls: type[Agent]) -> None:
    if issubclass(cls, LoopingAgent):
        if cls.step is LoopingAgent.step:
            raise InvalidAgentOption(name, "class", f"{cls.__qualname__} must override step()")
    elif cls.execute is Agent.execute:
        raise InvalidAgentOption(name, "class", f"{cls.__qualname__} must override execute()")


def _inside_orchestrator() -> bool:
    """On an agent's thread or the event dispatcher: waiting for shutdown would wait on
    ourselves."""
    name = threading.current_thread().name
    return name.startswith(("baton-agent-", "baton-agents-events", "baton-agents-supervisor"))
