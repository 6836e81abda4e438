"""Stateful test of the run lifecycle: one real App on a real SQLite file, driven by hypothesis.

Every run executes the workflow `flow(label)` = [s1, s2, s3]. Step s2 has a retry policy and
its behaviour is scripted per label (how many more attempts fail, and whether it fails
non-retryably). Time only moves when a rule advances the VirtualClock, and before every check
the worker is let to settle (no run RUNNING or due, no execution active, the dispatcher asleep
on the clock; this peeks at `App._runtime` and the clock's sleepers), so the model below
predicts each run exactly: its status, its back-off deadline, every step execution and the
clock time of every s2 attempt. Runs can also be held inside s1 or between s1 and s2 while the
test cancels them or shuts the App down, which is as predictable.

The exception are runs cancelled at a moment they may be executing (`start(then="cancel")`,
`advance(cancel=...)`): for those the checks are that nothing was checkpointed after
`cancel()` returned and that at most one step function was entered after it (a step whose
call had already passed the cancel check "finishes, unrecorded").
"""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import baton
from baton.store import RunRecord, RunStatus, StepStatus

START = 1_000.0
RETRY = baton.Retry(max_attempts=3, initial=10, backoff=2, max_delay=60, jitter=False)
SETTLE_TIMEOUT = 5.0
KNOWN = frozenset(RunStatus)
TERMINAL = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.DEAD})

fails_st = st.integers(min_value=0, max_value=4)
fatal_st = st.sampled_from([False, False, False, True])
pick_st = st.integers(min_value=0, max_value=63)
advance_st = st.sampled_from([0.5, 10.0, 15.0, 20.0, 30.0, 100.0])
then_st = st.sampled_from(
    ["", "", "restart", "cancel", "held_cancel", "held_restart"]
)  # "held_*": while the run is held inside s1 or between s1 and s2
where_st = st.sampled_from(["s1", "between"])
cancel_st = st.sampled_from([None, None, None, 0, 1, 2])  # a run to cancel right after


def define(app: baton.App, clock: baton.VirtualClock, script: dict, log: list) -> None:
    """The same definitions for every App of an example (first start and after restarts)."""
    lock = threading.Lock()

    def enter(label: str, step: str) -> None:
        with lock:
            log.append((label, step, clock.now()))

    def held(label: str, where: str) -> None:
        """Block while the test does something, when it holds this run at `where`."""
        hold = script[label]["hold"]
        if hold is not None and hold.where == where:
            hold.reached.set()
            assert hold.release.wait(SETTLE_TIMEOUT), f"{label} was never released"

    @app.step(name="s1")
    def s1(label: str) -> str:
        enter(label, "s1")
        held(label, "s1")
        return f"one:{label}"

    @app.step(name="s2", retry=RETRY)
    def s2(label: str) -> str:
        enter(label, "s2")
        plan = script[label]
        if plan["fatal"]:
            raise baton.NonRetryableError(f"fatal for {label}")
        if plan["fails"] > 0:
            plan["fails"] -= 1
            raise RuntimeError(f"transient for {label}")
        return f"two:{label}"

    @app.step(name="s3")
    def s3(label: str) -> str:
        enter(label, "s3")
        return f"three:{label}"

    @app.workflow(name="flow")
    def flow(label: str) -> list[str]:
        one = s1(label)
        held(label, "between")  # workflow code between two steps
        return [one, s2(label), s3(label)]


@dataclass
class Hold:
    where: str  # "s1" (inside the step) or "between" (after s1's checkpoint, before s2)
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


@dataclass
class ModelRun:
    label: str
    run_id: str
    key: str | None
    fails: int
    fatal: bool
    status: str = RunStatus.ENQUEUED
    available_at: float = 0.0
    s2_attempts: int = 0  # attempts of s2 since the run started or was last redriven
    s1_done: bool = False
    counts: Counter = field(default_factory=Counter)  # step executions expected
    s2_times: list[float] = field(default_factory=list)  # clock time of each s2 attempt
    exact: bool = True  # False once cancelled while it may have been executing
    cancelled: bool = False
    cancel_entries: int = 0  # step executions already seen when cancel() returned
    cancel_steps: list[tuple] = field(default_factory=list)  # checkpoints then


def simulate(m: ModelRun, now: float) -> None:
    """The run is claimed at clock time `now` and goes as far as it can without time moving."""
    if not m.s1_done:
        m.counts["s1"] += 1
        m.s1_done = True
    m.counts["s2"] += 1
    m.s2_times.append(now)
    m.s2_attempts += 1
    if m.fatal:
        m.status = RunStatus.FAILED
        return
    if m.fails > 0:
        m.fails -= 1
        if m.s2_attempts >= RETRY.max_attempts:
            m.status = RunStatus.DEAD
        else:
            m.status = RunStatus.ENQUEUED
            m.available_at = now + RETRY.delay(m.s2_attempts)
        return
    m.counts["s3"] += 1
    m.status = RunStatus.SUCCEEDED


def checkpoint_rows(steps: list) -> list[tuple]:
    return [(s.seq, s.name, s.status, s.attempts, s.output) for s in steps]


class LifecycleMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="baton-lifecycle-"))
        self.path = self.tmp / "baton.db"
        self.clock = baton.VirtualClock(start=START)
        self.script: dict[str, dict] = {}
        self.log: list[tuple[str, str, float]] = []
        self.app = self._new_app()
        self.runs: list[ModelRun] = []
        self.by_key: dict[str, ModelRun] = {}
        self.next_label = 0
        self.outputs: dict[tuple[str, int], str] = {}  # SUCCEEDED checkpoint outputs seen
        self.frozen: dict[tuple[str, int], int] = {}  # executions of that step when first seen
        self.last_seen: dict[str, str] = {}
        self.redriven: set[str] = set()  # redriven since the last check
        self.healthy = False  # True while every rule so far was followed by passing checks

    # -- helpers -------------------------------------------------------------------------
    def _new_app(self) -> baton.App:
        app = baton.App(self.path, clock=self.clock, poll_interval=0.05)
        define(app, self.clock, self.script, self.log)
        return app.launch()

    def _begin(self) -> None:
        self.healthy = False

    def _pick(self, pick: int) -> ModelRun:
        return self.runs[pick % len(self.runs)]

    def _new_run(self, fails: int, fatal: bool, keyed: bool, hold: Hold | None = None) -> ModelRun:
        label = f"L{self.next_label}"
        self.next_label += 1
        self.script[label] = {"fails": fails, "fatal": fatal, "hold": hold}
        key = f"key-{label}" if keyed else None
        handle = self.app.start("flow", label, idempotency_key=key)
        assert handle.created
        m = ModelRun(label, handle.id, key, fails, fatal)
        self.runs.append(m)
        if key is not None:
            self.by_key[key] = m
        return m

    def _entries(self, label: str) -> int:
        return sum(1 for entry in self.log if entry[0] == label)

    def _mark_cancelled(self, m: ModelRun, record: RunRecord, exact: bool) -> None:
        m.cancel_entries = self._entries(m.label)
        assert record.status == RunStatus.CANCELLED
        m.cancel_steps = checkpoint_rows(self.app.steps(m.run_id))
        m.status = RunStatus.CANCELLED
        m.cancelled = True
        m.exact = m.exact and exact

    def _model_advance(self, skip: ModelRun | None = None) -> None:
        now = self.clock.now()
        for m in self.runs:
            if m is not skip and m.status == RunStatus.ENQUEUED and m.available_at <= now:
                simulate(m, now)

    def _cancel_racing(self, m: ModelRun) -> None:
        """Cancel a run that may be executing right now."""
        sim = copy.deepcopy(m)
        simulate(sim, self.clock.now())
        try:
            record = self.app.cancel(m.run_id)
        except baton.InvalidState:
            # it finished before the cancel: it must have ended as the model says
            assert sim.status in TERMINAL, f"cancel refused, yet the model says {sim.status}"
            self.runs[self.runs.index(m)] = sim
            if sim.key is not None:
                self.by_key[sim.key] = sim
            return
        self._mark_cancelled(m, record, exact=False)

    def _settle(self) -> list[RunRecord]:
        """Wait until nothing can happen before the clock moves again: no run RUNNING or due,
        no execution active, and the dispatcher asleep on the virtual clock, twice in a row
        with its event loop turned over in between (so a wake-up already on its way, or a
        claim about to be made, is seen instead of being checked too early)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        seen = None
        while True:
            runs, quiet = self._quiet()
            if quiet is not None and quiet == seen:
                return runs
            seen = quiet
            if time.monotonic() > deadline:
                busy = [(r.run_id, r.status, r.available_at) for r in runs if self._busy(r)]
                raise AssertionError(
                    f"the worker did not settle in {SETTLE_TIMEOUT}s: clock={self.clock.now()}, "
                    f"busy runs={busy}, dispatcher asleep={quiet is not None}"
                )
            if quiet is None:
                time.sleep(0.002)
            else:
                self._turn_loop()

    def _busy(self, r: RunRecord) -> bool:
        return r.status == RunStatus.RUNNING or (
            r.status == RunStatus.ENQUEUED and r.available_at <= self.clock.now()
        )

    def _quiet(self) -> tuple[list[RunRecord], frozenset[int] | None]:
        """The runs, and (when the worker looks idle) the ids of the dispatcher's sleeps."""
        rt = self.app._runtime
        assert rt is not None
        sleeping = self._sleeping(rt)
        runs = self.app.runs(limit=10_000)
        if not sleeping or rt.active_count() or any(self._busy(r) for r in runs):
            return runs, None
        if self._sleeping(rt) != sleeping:
            return runs, None
        return runs, sleeping

    def _sleeping(self, rt: object) -> frozenset[int]:
        """Pending VirtualClock sleeps of this runtime's loop (only its dispatcher sleeps
        on the clock)."""
        loop = rt._loop  # type: ignore[attr-defined]
        with self.clock._lock:
            waiters = list(self.clock._waiters)
        return frozenset(id(fut) for _, _, lp, fut in waiters if lp is loop and not fut.done())

    def _turn_loop(self) -> None:
        async def turn() -> None:
            for _ in range(20):
                await asyncio.sleep(0)

        loop = self.app._runtime._loop  # type: ignore[union-attr]
        asyncio.run_coroutine_threadsafe(turn(), loop).result(timeout=SETTLE_TIMEOUT)

    def _check(self) -> None:
        runs = self._settle()
        now = self.clock.now()
        by_id = {r.run_id: r for r in runs}

        # statuses are known; one run per start that created one; one run per key
        for r in runs:
            assert r.status in KNOWN, f"unknown status {r.status!r}"
        assert sorted(by_id) == sorted(m.run_id for m in self.runs), "unexpected runs stored"
        keys = [r.idempotency_key for r in runs if r.idempotency_key is not None]
        assert len(keys) == len(set(keys)), f"an idempotency key yielded two runs: {keys}"
        for key, m in self.by_key.items():
            assert by_id[m.run_id].idempotency_key == key

        entries: Counter = Counter((label, step) for label, step, _ in self.log)
        per_label: Counter = Counter(label for label, _, _ in self.log)
        s2_times: dict[str, list[float]] = defaultdict(list)
        for label, step, t in self.log:
            if step == "s2":
                s2_times[label].append(t)
        labels = {m.label for m in self.runs}
        assert set(per_label) <= labels, "a step ran for a start that reused a key"

        for m in self.runs:
            r = by_id[m.run_id]
            where = f"run {m.label} ({m.run_id})"
            # terminal statuses only change through redrive
            prev = self.last_seen.get(m.run_id)
            if prev in TERMINAL and r.status != prev:
                assert m.run_id in self.redriven, f"{where} went {prev} -> {r.status}"
            assert r.status == m.status, f"{where} is {r.status}, the model says {m.status}"

            steps = self.app.steps(m.run_id)
            for s in steps:
                if s.status != StepStatus.SUCCEEDED:
                    continue
                ck = (m.run_id, s.seq)
                ran = entries[(m.label, s.name)]
                if ck in self.outputs:
                    assert s.output == self.outputs[ck], f"{where} step {s.seq} output changed"
                    assert ran == self.frozen[ck], f"{where} {s.name} ran after its checkpoint"
                else:
                    self.outputs[ck] = s.output
                    self.frozen[ck] = ran
            by_seq = {s.seq: s for s in steps}

            succeeded = self.app.events(run_id=m.run_id, type="baton.run.succeeded", limit=10)
            expected = 1 if r.status == RunStatus.SUCCEEDED else 0
            assert len(succeeded) == expected, f"{where}: {len(succeeded)} succeeded events"
            if r.status == RunStatus.SUCCEEDED:
                assert json.loads(r.output) == [
                    f"one:{m.label}",
                    f"two:{m.label}",
                    f"three:{m.label}",
                ]

            if r.status == RunStatus.ENQUEUED:  # waiting out a back-off, never overdue
                assert r.available_at > now, f"{where} is due at {r.available_at} <= {now}"
                s2 = by_seq[2]
                assert s2.status == StepStatus.RETRYING
                assert r.available_at == s2.finished_at + RETRY.delay(s2.attempts)
                assert r.available_at == m.available_at

            if m.cancelled:
                assert checkpoint_rows(steps) == m.cancel_steps, (
                    f"{where} checkpointed after cancel"
                )
                after = per_label[m.label] - m.cancel_entries
                assert after <= 1, f"{where} entered {after} steps after cancel returned"

            if not m.exact:
                continue
            ran = {step: entries[(m.label, step)] for step in ("s1", "s2", "s3")}
            assert ran == {step: m.counts[step] for step in ("s1", "s2", "s3")}, where
            assert s2_times[m.label] == m.s2_times, f"{where} s2 ran at the wrong times"
            assert self.script[m.label]["fails"] == m.fails, where
            if m.cancelled:
                continue
            layout = [(s.seq, s.name, s.status) for s in steps]
            ok = StepStatus.SUCCEEDED
            if m.status == RunStatus.SUCCEEDED:
                assert layout == [(1, "s1", ok), (2, "s2", ok), (3, "s3", ok)], where
            elif m.status == RunStatus.ENQUEUED:
                assert layout == [(1, "s1", ok), (2, "s2", StepStatus.RETRYING)], where
            else:
                assert layout == [(1, "s1", ok), (2, "s2", StepStatus.FAILED)], where
            assert by_seq[2].attempts == m.s2_attempts, where
            for s in steps:
                if s.status == ok:
                    word = {"s1": "one", "s2": "two", "s3": "three"}[s.name]
                    assert json.loads(s.output) == f"{word}:{m.label}", where

        self.last_seen = {m.run_id: by_id[m.run_id].status for m in self.runs}
        self.redriven.clear()

    # -- rules ---------------------------------------------------------------------------
    @initialize(plans=st.lists(st.tuples(fails_st, fatal_st, st.booleans()), max_size=3))
    def first_runs(self, plans: list[tuple[int, bool, bool]]) -> None:
        self._begin()
        for fails, fatal, keyed in plans:
            m = self._new_run(fails, fatal, keyed)
            simulate(m, self.clock.now())

    @rule(fails=fails_st, fatal=fatal_st, keyed=st.booleans(), then=then_st, where=where_st)
    def start(self, fails: int, fatal: bool, keyed: bool, then: str, where: str) -> None:
        """Start a run; with `then`, restart the app or cancel the run while it executes
        (with `held_*`: while it is held at `where`)."""
        self._begin()
        if then.startswith("held"):
            self._start_held(fails, fatal, keyed, then, where)
            return
        m = self._new_run(fails, fatal, keyed)
        if then == "cancel":
            self._cancel_racing(m)
            return
        if then == "restart":  # the run is handed back at its next step and resumed
            self.app.shutdown(timeout=10)
            self.app = self._new_app()
        simulate(m, self.clock.now())

    def _start_held(self, fails: int, fatal: bool, keyed: bool, then: str, where: str) -> None:
        hold = Hold(where)
        m = self._new_run(fails, fatal, keyed, hold)
        self._wait_for(hold.reached.is_set, f"the run to be held at {where}")
        if then == "held_cancel":
            # a step running now finishes unrecorded; no further step is entered
            self._mark_cancelled(m, self.app.cancel(m.run_id), exact=True)
            m.counts["s1"] += 1
            hold.release.set()
            return
        # held_restart: a graceful shutdown lets the run reach its next step (recording s1
        # if it was running), hands it back there, and the new App resumes it
        rt = self.app._runtime
        assert rt is not None
        stopper = threading.Thread(target=self.app.shutdown, kwargs={"timeout": 10})
        stopper.start()
        self._wait_for(lambda: rt.draining, "the worker to drain")
        hold.release.set()
        stopper.join()
        self.script[m.label]["hold"] = None
        self.app = self._new_app()
        suspended = self.app.events(run_id=m.run_id, type="baton.run.suspended")
        assert len(suspended) == 1, f"{len(suspended)} suspended events"
        simulate(m, self.clock.now())

    def _wait_for(self, predicate: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.001)

    @precondition(lambda self: bool(self.by_key))
    @rule(pick=pick_st)
    def start_with_a_used_key(self, pick: int) -> None:
        self._begin()
        keyed = sorted(self.by_key)
        key = keyed[pick % len(keyed)]
        label = f"L{self.next_label}"  # never runs: the key already has a run
        self.next_label += 1
        handle = self.app.start("flow", label, idempotency_key=key)
        assert handle.id == self.by_key[key].run_id
        assert not handle.created

    @rule(seconds=advance_st, times=st.integers(min_value=1, max_value=3), cancel=cancel_st)
    def advance(self, seconds: float, times: int, cancel: int | None) -> None:
        """Move the clock `times` times, letting the worker settle in between; with `cancel`,
        cancel a run right after the last move (it may just have become due and be executing).
        """
        self._begin()
        m = None if cancel is None or not self.runs else self._pick(cancel)
        for left in reversed(range(times)):
            self.clock.advance(seconds)
            if left:
                self._model_advance()
                self._settle()
        self._model_advance(skip=m)
        if m is None:
            return
        if m.status in TERMINAL:
            with pytest.raises(baton.InvalidState, match="cancel"):
                self.app.cancel(m.run_id)
        elif m.available_at > self.clock.now():  # still waiting: nothing can be executing
            self._mark_cancelled(m, self.app.cancel(m.run_id), exact=True)
        else:
            self._cancel_racing(m)

    @precondition(lambda self: any(m.status == RunStatus.ENQUEUED for m in self.runs))
    @rule(early=st.booleans())
    def advance_to_next_due(self, early: bool) -> None:
        """Set the clock to the earliest back-off deadline (or just short of it)."""
        self._begin()
        due = min(m.available_at for m in self.runs if m.status == RunStatus.ENQUEUED)
        self.clock.set(due - 0.001 if early else due)
        self._model_advance()

    @precondition(lambda self: bool(self.runs))
    @rule(pick=pick_st)
    def cancel(self, pick: int) -> None:
        self._begin()
        m = self._pick(pick)
        if m.status in TERMINAL:
            with pytest.raises(baton.InvalidState, match="cancel"):
                self.app.cancel(m.run_id)
            return
        self._mark_cancelled(m, self.app.cancel(m.run_id), exact=True)

    @precondition(lambda self: bool(self.runs))
    @rule(pick=pick_st)
    def redrive(self, pick: int) -> None:
        self._begin()
        m = self._pick(pick)
        if m.status not in (RunStatus.DEAD, RunStatus.FAILED):
            with pytest.raises(baton.InvalidState, match="redrive"):
                self.app.redrive(m.run_id)
            return
        self.app.redrive(m.run_id)
        self.redriven.add(m.run_id)
        m.s2_attempts = 0
        simulate(m, self.clock.now())

    @precondition(lambda self: bool(self.runs))
    @rule(pick=pick_st, fix=st.booleans(), fails=fails_st, fatal=fatal_st)
    def rescript(self, pick: int, fix: bool, fails: int, fatal: bool) -> None:
        """Fix a run's script (its next s2 attempt succeeds), or give it a new one."""
        self._begin()
        m = self._pick(pick)
        if m.cancelled:
            return  # its script may be in use by a step still finishing after the cancel
        if fix:
            fails, fatal = 0, False
        self.script[m.label].update(fails=fails, fatal=fatal)
        m.fails, m.fatal = fails, fatal

    @rule()
    def restart(self) -> None:
        """Graceful shutdown, then a new App on the same file and clock."""
        self._begin()
        self.app.shutdown(timeout=10)
        self.app = self._new_app()

    # -- checks --------------------------------------------------------------------------
    @invariant()
    def consistent(self) -> None:
        self._check()
        self.healthy = True

    def teardown(self) -> None:
        try:
            if self.healthy:
                self._finish()
        finally:
            self.app.shutdown(timeout=10)
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _finish(self) -> None:
        """Fix every script, redrive what failed, let every back-off pass: all but the
        cancelled runs must succeed."""
        for m in self.runs:
            if not m.cancelled:
                self.script[m.label].update(fails=0, fatal=False)
                m.fails, m.fatal = 0, False
        for m in self.runs:
            if m.status in (RunStatus.DEAD, RunStatus.FAILED):
                self.app.redrive(m.run_id)
                self.redriven.add(m.run_id)
                m.s2_attempts = 0
                simulate(m, self.clock.now())
        self._check()
        self.clock.advance(10 * RETRY.max_delay)
        self._model_advance()
        self._check()
        for r in self.app.runs(limit=10_000):
            m = next(m for m in self.runs if m.run_id == r.run_id)
            want = RunStatus.CANCELLED if m.cancelled else RunStatus.SUCCEEDED
            assert r.status == want, f"run {m.label} ended {r.status}, expected {want}"


SETTINGS = settings(
    max_examples=50,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    database=None,
)


@pytest.mark.timeout(300)
def test_run_lifecycle() -> None:
    run_state_machine_as_test(LifecycleMachine, settings=SETTINGS)
