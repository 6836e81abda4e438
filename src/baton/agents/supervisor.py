"""The supervisor: one thread that owns every agent's state and reacts to what happens.

It sleeps in `multiprocessing.connection.wait` on a self-pipe (thread agents' reports and
callers' requests), each process agent's pipe and each process sentinel, with a timeout
that is exactly the next deadline (a start, heartbeat or stop timeout, or the end of a
back-off). Nothing is polled: a slot freed by an exit is filled in the same wake-up.

Every change to an agent's state happens on this thread while it holds `lock`; readers
take the lock for a consistent snapshot. User code never runs here.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for_ready
from typing import Any

from pydantic import BaseModel, ValidationError

from baton.agents import graph
from baton.agents.agent import describe_error
from baton.agents.config import Execution, OnDependencyFailure, OrchestratorConfig, Restart, RunMode
from baton.agents.errors import AgentConfigInvalid, validation_problems
from baton.agents.events import AgentMessage, EventManager, EventType
from baton.agents.instance import Instance, Launch
from baton.agents.processes import ProcessInstance
from baton.agents.records import AgentRecord, AgentSpec
from baton.agents.states import ACTIVE, PENDING, AgentState
from baton.agents.threads import ThreadInstance
from baton.observability import metrics
from baton.observability.logging import get_logger

log = get_logger("baton.agents")

# Why a stop was asked for. A later reason replaces an earlier one only when it ranks higher:
# an operator's stop beats a heartbeat-triggered restart.
_STOP_RANK = {"heartbeat": 0, "start_timeout": 0, "restart": 1, "dependency": 2, "requested": 3}
_STOP_RANK["shutdown"] = 4
_FAILURE_STOPS = frozenset({"heartbeat", "start_timeout"})
HEARTBEAT_EVENT_EVERY = 1.0  # seconds between AGENT_HEARTBEAT events of one agent


@dataclass(slots=True)
class _Call:
    fn: Callable[[], Any]
    future: Future[Any]


class Supervisor:
    def __init__(
        self,
        config: OrchestratorConfig,
        events: EventManager,
        on_message: Callable[[AgentMessage], None],
        on_finished: Callable[[], None],
    ) -> None:
        self.config = config
        self.events = events
        self.records: dict[str, AgentRecord] = {}
        self.lock = threading.RLock()
        self._on_message = on_message
        self._on_finished = on_finished
        self._graph: dict[str, list[str]] = {}
        self._dependents: dict[str, list[str]] = {}
        self._order: list[str] = []  # start order: dependencies first
        self._queue: list[tuple[int, int, str]] = []  # (-priority, seq, name)
        self._seq = itertools.count(1)
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._pipe_lock = threading.Lock()
        self._pipe_closed = False
        self._by_conn: dict[Any, ProcessInstance] = {}
        self._by_sentinel: dict[int, ProcessInstance] = {}
        self._thread: threading.Thread | None = None
        self._running = False
        self._dirty = False  # dependencies may have changed: re-check WAITING agents
        self._shutting_down = False
        self._idle_announced = False
        self.finished = threading.Event()

    # -- registration and start (callers' threads) -----------------------------------------
    def add(self, spec: AgentSpec) -> None:
        """Record a registration; once running, also check its dependencies and queue it."""
        with self.lock:
            self.records[spec.name] = AgentRecord(spec)
            self._graph[spec.name] = [d.name for d in spec.depends_on]
            self._dependents = graph.dependents(self._graph)
            self._order.append(spec.name)

    def check_graph(self) -> None:
        with self.lock:
            graph.check(self._graph)
            self._order = graph.start_order(self._graph)

    def start(self) -> None:
        with self.lock:
            for name in self._order:
                self._make_eligible(self.records[name])
            self._running = True
            self._post(_Call(lambda: None, Future()))  # a first turn of the loop fills slots
        self._thread = threading.Thread(target=self._run, name="baton-agents-supervisor")
        self._thread.daemon = True
        self._thread.start()

    def admit(self, name: str) -> None:
        """Queue an agent registered while running (its dependencies are already checked)."""
        self.call(lambda: self._make_eligible(self.records[name]))

    @property
    def running(self) -> bool:
        return self._running

    # -- requests from other threads --------------------------------------------------------
    def call(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run `fn` on the supervisor's thread (inline when it is not running)."""
        future: Future[Any] = Future()
        with self.lock:
            if not self._running:
                _settle(future, fn)
                return future
            self._post(_Call(fn, future))
        return future

    def _post(self, item: Any) -> None:
        self._inbox.put(item)
        with self._pipe_lock:
            if self._pipe_closed:  # a thread that outlived the loop: nobody listens
                return
            with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
                os.write(self._wake_w, b"\0")

    def stop_agent(self, name: str, reason: str = "requested") -> Future[Any]:
        waiter: Future[Any] = Future()

        def stop() -> None:
            rec = self.records[name]
            if rec.instance is not None:
                rec.waiters.append(waiter)
                self._request_stop(rec, reason)
                return
            if rec.state in PENDING:
                self._set(rec, AgentState.STOPPED, "stopped on request before it started")
                rec.pending_restart = None
            waiter.set_result(rec.state)

        self.call(stop).result()
        return waiter

    def start_agent(self, name: str, restart: bool = False) -> Future[Any]:
        waiter: Future[Any] = Future()

        def start() -> None:
            rec = self.records[name]
            if rec.instance is not None:
                if restart:
                    rec.waiters.append(waiter)
                    self._request_stop(rec, "restart")
                else:
                    waiter.set_result(rec.state)
                return
            if rec.state in (AgentState.WAITING, AgentState.QUEUED) and not restart:
                waiter.set_result(rec.state)
                return
            # an operator's start is a fresh start: the restart budget and blocks are cleared
            rec.restarts.clear()
            rec.blocked_by = None
            rec.backoff_until = None
            rec.pending_restart = {"cause": "requested"} if restart else None
            self._make_eligible(rec)
            self._fill_slots()
            waiter.set_result(rec.state)

        self.call(start).result()
        return waiter

    def shutdown(self, timeout: float | None) -> None:
        def begin() -> None:
            self._shutting_down = True
            for rec in self.records.values():
                if rec.state in PENDING:
                    rec.pending_restart = None
                    self._set(rec, AgentState.STOPPED, "the orchestrator shut down")
                elif rec.instance is not None:
                    self._request_stop(rec, "shutdown", timeout)

        self.call(begin)

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                ready = wait_for_ready(self._waitables(), self._timeout())
                with self.lock:
                    try:
                        self._handle(ready)
                    except Exception:  # one bad turn must not end supervision
                        log.exception("agent supervisor: error handling a wake-up")
                    if self._finished_now():
                        self._running = False
                        break
        except BaseException:
            log.exception("agent supervisor crashed")
            with self.lock:
                self._running = False
        finally:
            self._drain_calls()
            self.finished.set()
            self._on_finished()

    def _waitables(self) -> list[Any]:
        with self.lock:
            return [self._wake_r, *self._by_conn, *self._by_sentinel]

    def _timeout(self) -> float | None:
        with self.lock:
            deadlines = [d for rec in self.records.values() if (d := self._deadline(rec))]
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - time.monotonic())

    def _deadline(self, rec: AgentRecord) -> float | None:
        if rec.state is AgentState.BACKOFF:
            return rec.backoff_until
        inst = rec.instance
        if inst is None:
            return None
        if inst.stop_stage is not None:
            return inst.stop_deadline
        if rec.state is AgentState.STARTING:
            return inst.start_deadline
        timeout = rec.spec.heartbeat_timeout
        if rec.state is AgentState.RUNNING and timeout:
            return inst.last_beat + timeout
        return None

    def _handle(self, ready: list[Any]) -> None:
        if self._wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake_r, 4096):
                    pass
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Call):
                _settle(item.future, item.fn)
            else:
                self._on_report(*item)
        for obj in ready:
            inst = self._by_conn.get(obj)
            if inst is not None:
                self._read_process(inst)
        for obj in ready:
            inst = self._by_sentinel.get(obj) if isinstance(obj, int) else None
            if inst is not None:
                self._process_exited(inst)
        self._fire_deadlines(time.monotonic())
        if self._dirty:
            self._dirty = False
            for name in self._order:
                if self.records[name].state is AgentState.WAITING:
                    self._make_eligible(self.records[name])
        self._fill_slots()

    def _drain_calls(self) -> None:
        """Requests that arrived as the loop ended run inline, so no caller waits forever."""
        with self.lock:
            while True:
                try:
                    item = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, _Call):
                    _settle(item.future, item.fn)
            for rec in self.records.values():
                self._resolve_waiters(rec)
        with self._pipe_lock:  # never write to a closed descriptor (its number is reused)
            self._pipe_closed = True
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _finished_now(self) -> bool:
        if any(rec.instance is not None for rec in self.records.values()):
            return False
        if self._shutting_down:
            self._announce_idle(force=True)
            return True
        if any(r.state in (AgentState.QUEUED, AgentState.BACKOFF) for r in self.records.values()):
            self._idle_announced = False
            return False
        if self.config.run_mode is RunMode.DAEMON:
            self._announce_idle()
            return False
        for rec in self.records.values():  # nothing left can make a WAITING agent eligible
            if rec.state is AgentState.WAITING:
                reason = f"{self._waiting_for(rec)}; nothing can change that"
                self._set(rec, AgentState.SKIPPED, reason)
        self._announce_idle(force=True)
        return True

    def _announce_idle(self, force: bool = False) -> None:
        ran = any(rec.generation for rec in self.records.values())
        if not self._idle_announced and (ran or force):
            self._idle_announced = True
            states = {name: rec.state.value for name, rec in self.records.items()}
            self.events.emit(EventType.ALL_AGENTS_TERMINATED, None, states=states)

    # -- reports from agents ----------------------------------------------------------------
    def _on_report(self, inst: Instance, kind: str, body: Any) -> None:
        rec = self.records[inst.name]
        current = rec.instance is inst
        if kind == "exit":
            inst.result = body
            if isinstance(inst, ThreadInstance):  # a process's code comes from its sentinel
                self._ended(rec, inst, _thread_exit_code(body), None)
        elif kind == "ready":
            if current and inst.ready_at is None:
                inst.ready_at = time.time()
                inst.last_beat = time.monotonic()
                if rec.state is AgentState.STARTING:
                    self._set(rec, AgentState.RUNNING)
                    self.events.emit(EventType.AGENT_READY, rec.name, generation=inst.generation)
                    self._dirty = True
        elif kind == "heartbeat":
            if current:
                inst.last_beat = time.monotonic()
                inst.last_beat_wall = time.time()
                # every beat counts; events (and event-log rows) at most one a second
                if inst.last_beat - inst.beat_reported >= HEARTBEAT_EVENT_EVERY:
                    inst.beat_reported = inst.last_beat
                    self.events.emit(
                        EventType.AGENT_HEARTBEAT, rec.name, generation=inst.generation
                    )
        elif kind == "message":
            message = AgentMessage(rec.name, body, time.time(), inst.generation)
            self._on_message(message)
            self.events.deliver(message)
        elif kind == "error":
            rec.last_error = {**body, "generation": inst.generation}
            self.events.emit(EventType.AGENT_ERROR, rec.name, generation=inst.generation, **body)

    def _read_process(self, inst: ProcessInstance) -> None:
        for kind, body in inst.read():
            self._on_report(inst, kind, body)
        if inst.eof:  # a closed pipe stays readable: stop watching it; the sentinel follows
            self._by_conn.pop(inst.conn, None)

    def _process_exited(self, inst: ProcessInstance) -> None:
        for kind, body in inst.read():
            self._on_report(inst, kind, body)
        self._by_conn.pop(inst.conn, None)
        self._by_sentinel.pop(inst.sentinel, None)
        code, sig = inst.exit_status()
        if inst.stop_reason is not None:
            inst.kill_leftovers()  # a stopped agent's tree goes with it
        inst.close()
        self._ended(self.records[inst.name], inst, code, sig)

    # -- deadlines --------------------------------------------------------------------------
    def _fire_deadlines(self, now: float) -> None:
        for rec in list(self.records.values()):
            deadline = self._deadline(rec)
            if deadline is None or deadline > now:
                continue
            inst = rec.instance
            if rec.state is AgentState.BACKOFF:
                rec.backoff_until = None
                self._make_eligible(rec)
            elif inst is None:
                continue
            elif inst.stop_stage is not None:
                self._escalate(rec, inst, now)
            elif rec.state is AgentState.STARTING:
                timeout = self._start_timeout(rec)
                self._error(rec, "StartTimeout", f"not READY within {timeout:g}s of its start")
                self._request_stop(rec, "start_timeout")
            else:
                timeout = rec.spec.heartbeat_timeout or 0.0
                self._error(rec, "HeartbeatTimeout", f"no heartbeat for {timeout:g}s")
                self._request_stop(rec, "heartbeat")

    def _escalate(self, rec: AgentRecord, inst: Instance, now: float) -> None:
        if isinstance(inst, ProcessInstance):
            if inst.stop_stage == "cooperative":
                inst.stop_stage = "SIGTERM"
                inst.stop_deadline = now + self.config.kill_timeout
                inst.signal_tree(signal.SIGTERM)
            elif inst.stop_stage == "SIGTERM":
                inst.stop_stage = "SIGKILL"
                inst.stop_deadline = None  # SIGKILL cannot be refused; the sentinel follows
                inst.signal_tree(signal.SIGKILL)
            return
        self._stuck(rec, inst)

    def _stuck(self, rec: AgentRecord, inst: Instance) -> None:
        """A thread ignored its stop: keep it in view (it may end later), free its slot."""
        inst.stop_stage = "stuck"
        inst.stop_deadline = None
        rec.stuck.append(inst)
        rec.instance = None
        waited = self._stop_timeout(rec)
        self.events.emit(
            EventType.AGENT_STUCK,
            rec.name,
            generation=inst.generation,
            stop_reason=inst.stop_reason,
            message=f"thread {inst.describe().get('thread')} ignored a stop for {waited:g}s "
            "and is still running",
        )
        reason = inst.stop_reason
        if reason in _FAILURE_STOPS:
            self._restart_or_end(rec, cause=reason or "failure", failed=True)
        elif reason == "restart":
            self._restart_now(rec)
        else:
            self._set(rec, AgentState.STUCK, f"ignored a stop for {waited:g}s; still running")
            self._dirty = True
        self._resolve_waiters(rec)

    # -- stopping, ending, restarting -------------------------------------------------------
    def _request_stop(self, rec: AgentRecord, reason: str, timeout: float | None = None) -> None:
        inst = rec.instance
        if inst is None:
            return
        if inst.stop_reason is None or _STOP_RANK[reason] > _STOP_RANK[inst.stop_reason]:
            inst.stop_reason = reason
        deadline = time.monotonic() + (timeout if timeout is not None else self._stop_timeout(rec))
        if inst.stop_stage is None:
            inst.stop_stage = "cooperative"
            inst.stop_deadline = deadline
            self._set(rec, AgentState.STOPPING, f"stopping ({reason})")
            if isinstance(inst, ProcessInstance):
                inst.remember_tree()  # what it leaves behind when it exits is killed
            inst.request_stop()
        elif inst.stop_stage == "cooperative" and inst.stop_deadline is not None:
            inst.stop_deadline = min(inst.stop_deadline, deadline)

    def _ended(self, rec: AgentRecord, inst: Instance, code: int | None, sig: int | None) -> None:
        inst.ended = True
        data: dict[str, Any] = {
            **inst.describe(),
            "execution": inst.execution,
            "exit_code": code,
            "signal": sig,
            "signal_name": signal.Signals(sig).name if sig else None,
            "uptime": round(time.monotonic() - inst.started_mono, 6),
        }
        if inst in rec.stuck:  # a thread reported STUCK has ended after all
            rec.stuck.remove(inst)
            self.events.emit(EventType.AGENT_TERMINATED, rec.name, **data, outcome="stopped late")
            if rec.state is AgentState.STUCK and not rec.stuck:
                self._set(rec, AgentState.STOPPED, "stopped (after being stuck)")
            return
        rec.instance = None
        error = (inst.result or {}).get("error")
        if error:
            rec.last_error = {**error, "generation": inst.generation}
            self.events.emit(EventType.AGENT_ERROR, rec.name, generation=inst.generation, **error)
        reason = inst.stop_reason
        if reason in _FAILURE_STOPS:
            outcome = "failed"  # stopped by us because it hung or never became READY
        elif reason is not None:
            outcome = "stopped"
        elif sig is not None:
            outcome = "killed"  # by someone else
        else:
            outcome = "failed" if code != 0 or error else "completed"
        data.update(outcome=outcome, stop_reason=reason, stop_stage=inst.stop_stage)
        rec.last_exit = data
        self.events.emit(EventType.AGENT_TERMINATED, rec.name, **data)
        self._dirty = True
        if reason == "restart":
            self._restart_now(rec)
        elif reason in ("requested", "shutdown"):
            self._set(rec, AgentState.STOPPED, "stopped on request")
        elif reason == "dependency":
            self._set(rec, AgentState.STOPPED, f"dependency {rec.blocked_by!r} failed")
        elif outcome == "completed":
            rec.completed_once = True
            self._restart_or_end(rec, cause="completed", failed=False)
        else:
            self._restart_or_end(rec, cause=reason or outcome, failed=True)
        self._resolve_waiters(rec)

    def _restart_or_end(self, rec: AgentRecord, cause: str, failed: bool) -> None:
        policy = rec.spec.restart
        wanted = policy.when is Restart.ALWAYS or (policy.when is Restart.ON_FAILURE and failed)
        end_state = AgentState.FAILED if failed else AgentState.COMPLETED
        if not wanted or self._shutting_down:
            self._set(rec, end_state, f"ended ({cause})")
            if failed:
                self._dependency_failed(rec)
            return
        now = time.monotonic()
        while rec.restarts and rec.restarts[0] <= now - policy.window:
            rec.restarts.popleft()
        if len(rec.restarts) >= policy.max_restarts:
            message = (
                f"restarted {len(rec.restarts)} time(s) within {policy.window:g}s, the most "
                f"its policy allows; not restarting after this {cause}"
            )
            self._error(rec, "RestartLimitReached", message)
            self._set(rec, end_state, message)
            if failed:
                self._dependency_failed(rec)
            return
        rec.restarts.append(now)
        rec.total_restarts += 1
        delay = policy.delay(len(rec.restarts))
        rec.pending_restart = {
            "cause": cause,
            "restart": len(rec.restarts),
            "window": policy.window,
            "delay": round(delay, 6),
            "previous_generation": rec.generation,
        }
        if delay > 0:
            rec.backoff_until = now + delay
            self._set(rec, AgentState.BACKOFF, f"restarting in {delay:.3g}s after {cause}")
        else:
            self._make_eligible(rec)

    def _restart_now(self, rec: AgentRecord) -> None:
        """An operator's restart: straight back into the slot it just left."""
        rec.pending_restart = {"cause": "requested", "previous_generation": rec.generation}
        self._make_eligible(rec)
        if rec.state is AgentState.QUEUED:
            self._spawn(rec)

    def _resolve_waiters(self, rec: AgentRecord) -> None:
        if rec.instance is not None and rec.instance.stop_stage is not None:
            return  # still stopping
        waiters, rec.waiters = rec.waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(rec.state)

    # -- dependencies -----------------------------------------------------------------------
    def _make_eligible(self, rec: AgentRecord) -> None:
        status, dep = self._dependency_status(rec)
        if status == "failed":
            rec.pending_restart = None
            rec.blocked_by = dep
            self._set(rec, AgentState.SKIPPED, f"dependency {dep!r} failed")
            self._dependency_failed(rec)
        elif status == "wait":
            self._set(rec, AgentState.WAITING, self._waiting_for(rec))
        else:
            seq = next(self._seq)
            rec.queued_seq = seq
            self._set(rec, AgentState.QUEUED, "waiting for a free slot")
            heapq.heappush(self._queue, (-rec.spec.priority, seq, rec.name))

    def _dependency_status(self, rec: AgentRecord) -> tuple[str, str | None]:
        waiting: str | None = None
        for dep in rec.spec.depends_on:
            other = self.records[dep.name]
            if dep.until == "completed":
                ok = other.completed_once
            else:
                ok = other.state in (AgentState.RUNNING, AgentState.COMPLETED)
            if ok:
                continue
            if other.state in (AgentState.FAILED, AgentState.SKIPPED) or (
                other.blocked_by is not None and other.state is AgentState.STOPPED
            ):
                return "failed", dep.name
            waiting = waiting or dep.name
        return ("wait", waiting) if waiting else ("ok", None)

    def _waiting_for(self, rec: AgentRecord) -> str:
        parts = []
        for dep in rec.spec.depends_on:
            other = self.records[dep.name]
            done = (
                other.completed_once
                if dep.until == "completed"
                else other.state
                in (
                    AgentState.RUNNING,
                    AgentState.COMPLETED,
                )
            )
            if not done:
                want = "COMPLETED" if dep.until == "completed" else "READY"
                parts.append(f"{dep.name} to be {want} (it is {other.state.value})")
        return "waiting for " + ", ".join(parts) if parts else "dependencies satisfied"

    def _dependency_failed(self, rec: AgentRecord) -> None:
        """`rec` failed for good: dependents that have not started never will; running ones
        are stopped unless they asked to keep running."""
        for name in self._dependents.get(rec.name, []):
            other = self.records[name]
            if other.state in PENDING:
                other.pending_restart = None
                other.blocked_by = rec.name
                self._set(other, AgentState.SKIPPED, f"dependency {rec.name!r} failed")
                self._dependency_failed(other)
            elif (
                other.instance is not None
                and other.state in ACTIVE
                and other.spec.on_dependency_failure is OnDependencyFailure.STOP
            ):
                other.blocked_by = rec.name
                self._request_stop(other, "dependency")
                self._dependency_failed(other)

    # -- slots and spawning -----------------------------------------------------------------
    def _fill_slots(self) -> None:
        cap = self.config.max_workers
        active = sum(1 for rec in self.records.values() if rec.instance is not None)
        while self._queue and (cap is None or active < cap) and not self._shutting_down:
            _, seq, name = heapq.heappop(self._queue)
            rec = self.records[name]
            if rec.state is not AgentState.QUEUED or rec.queued_seq != seq:
                continue  # left the queue since (stopped, skipped, re-queued)
            if self._spawn(rec):
                active += 1

    def _spawn(self, rec: AgentRecord) -> bool:
        spec = rec.spec
        if rec.config is None:
            try:
                rec.config = validate_config(spec)
            except AgentConfigInvalid as exc:
                self._fail_to_start(rec, exc, "invalid config")
                return False
        launch = Launch(
            cls=spec.cls,
            name=spec.name,
            config=rec.config,
            generation=rec.generation + 1,
            heartbeat_every=(spec.heartbeat_timeout / 4) if spec.heartbeat_timeout else None,
            orphan_grace=self._stop_timeout(rec),
        )
        try:
            if spec.execution is Execution.PROCESS:
                inst: Instance = ProcessInstance(launch, self.config.start_method)
            else:
                inst = ThreadInstance(launch, self._post)
        except Exception as exc:
            self._fail_to_start(rec, exc, f"cannot start its {spec.execution.value}")
            return False
        rec.generation = launch.generation
        rec.instance = inst
        rec.blocked_by = None
        inst.start_deadline = inst.started_mono + self._start_timeout(rec)
        if isinstance(inst, ProcessInstance):
            self._by_conn[inst.conn] = inst
            self._by_sentinel[inst.sentinel] = inst
        self._set(rec, AgentState.STARTING)
        self._idle_announced = False
        if rec.pending_restart is not None:
            restarted, rec.pending_restart = rec.pending_restart, None
            metrics.agent_restarted(rec.name)
            self.events.emit(
                EventType.AGENT_RESTARTED, rec.name, generation=inst.generation, **restarted
            )
        self.events.emit(
            EventType.AGENT_STARTED,
            rec.name,
            **inst.describe(),
            execution=spec.execution.value,
        )
        return True

    def _fail_to_start(self, rec: AgentRecord, exc: Exception, what: str) -> None:
        """A start that can never work (bad config, unpicklable class): FAILED, no restart."""
        detail = describe_error(exc)
        if isinstance(exc, AgentConfigInvalid):
            detail["problems"] = [{"path": p, "message": m} for p, m in exc.problems]
            detail.pop("traceback", None)
        rec.last_error = detail
        rec.pending_restart = None
        self.events.emit(EventType.AGENT_ERROR, rec.name, stage="start", **detail)
        self._set(rec, AgentState.FAILED, f"{what}: {exc}")
        self._dependency_failed(rec)

    # -- small helpers ----------------------------------------------------------------------
    def _set(self, rec: AgentRecord, state: AgentState, reason: str | None = None) -> None:
        rec.state = state
        rec.reason = reason

    def _error(self, rec: AgentRecord, type_name: str, message: str) -> None:
        generation = rec.instance.generation if rec.instance else rec.generation
        rec.last_error = {"type": type_name, "message": message, "generation": generation}
        self.events.emit(
            EventType.AGENT_ERROR, rec.name, type=type_name, message=message, generation=generation
        )

    def _stop_timeout(self, rec: AgentRecord) -> float:
        return rec.spec.stop_timeout or self.config.stop_timeout

    def _start_timeout(self, rec: AgentRecord) -> float:
        return rec.spec.start_timeout or self.config.start_timeout


def validate_config(spec: AgentSpec) -> BaseModel:
    """The registration's config as an instance of the agent class's `Config` model."""
    model = spec.cls.Config
    raw = spec.config
    if isinstance(raw, model):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        return model.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        raise AgentConfigInvalid(spec.name, validation_problems(exc)) from None


def _settle(future: Future[Any], fn: Callable[[], Any]) -> None:
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        if not future.done():
            future.set_result(result)


def _thread_exit_code(result: dict[str, Any]) -> int:
    """0 for a clean end; a thread's sys.exit(n) keeps its n; any other failure is 1."""
    if result["ok"]:
        return 0
    code = (result.get("error") or {}).get("exit_code")
    return code if isinstance(code, int) and code else 1
