"""Flow control on real stores (SQLite, PostgreSQL): queue concurrency, per-key concurrency,
rate limits, priorities, debounce, and the bad inputs refused before anything is written. Two
tests run two real worker processes on one store (tests/flow_worker.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import baton
from baton.store import RunStatus
from baton.store.flow import Admission, Queue
from conftest import wait_until
from flow_worker import open_probe

WORKER = Path(__file__).resolve().parent / "flow_worker.py"


class Gauge:
    """Counts the executions in progress, per key, and remembers the highest count."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now: Counter[str] = Counter()
        self.max: Counter[str] = Counter()
        self.entered: Counter[str] = Counter()
        self.order: list[Any] = []

    def enter(self, key: str = "all", tag: Any = None) -> None:
        with self.lock:
            self.now[key] += 1
            self.entered[key] += 1
            self.max[key] = max(self.max[key], self.now[key])
            self.order.append(tag)

    def leave(self, key: str = "all") -> None:
        with self.lock:
            self.now[key] -= 1

    def hold(self, key: str, count: int, total: int, timeout: float = 5.0) -> None:
        """Hold the step until `count` executions of `key` are in progress (or all `total`
        have begun), then a little longer: a run let in past a limit would show in `max`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if self.entered[key] >= total:
                    return
                if self.now[key] >= count:
                    break
            time.sleep(0.002)
        time.sleep(0.05)


def started_times(app: baton.App, workflow: str) -> list[float]:
    return sorted(r.started_at for r in app.runs(workflow=workflow, limit=1000) if r.started_at)


def assert_rate_respected(times: list[float], limit: int, period: float) -> None:
    """No window of `period` seconds holds more than `limit` of the sorted start `times`."""
    for i in range(len(times) - limit):
        span = times[i + limit] - times[i]
        assert span >= period, (
            f"{limit + 1} first starts within {span:.3f}s (< {period}s): {times[i : i + limit + 1]}"
        )


# -- admission maths ----------------------------------------------------------------------------
def test_admission_counts_what_it_admits_in_one_claim() -> None:
    limits = {
        "q": Queue("q", concurrency=3, key_concurrency=2, rate_limit=2, rate_period=1.0),
        "open": Queue("open"),
    }
    adm = Admission(limits, active={"q": 1}, active_keys={"k": 1}, starts={"q": 1})
    assert adm.admit("q", "k", None, first=False)  # q 2 of 3; k 2 of 2 (the queue's key limit)
    assert not adm.admit("q", "k", None, first=False)  # key k is full
    assert adm.admit("q", "k", 3, first=False)  # a run's own key limit wins: q 3 of 3, k 3 of 3
    assert adm.full_queues() == ["q"]
    assert not adm.admit("q", None, None, first=False)  # the queue is full
    assert adm.admit("open", "k", 4, first=True)  # keys span queues: k 4 of 4
    assert not adm.admit("open", "k", None, first=True)  # no limit anywhere: 1 at a time
    fresh = Admission(limits, active={}, active_keys={}, starts={"q": 1})
    assert fresh.admit("q", None, None, first=True)  # second start of the window
    assert not fresh.admit("q", None, None, first=True)  # the rate window is full...
    assert fresh.rate_blocked == {"q"} and fresh.rate_exhausted() == ["q"]
    assert fresh.admit("q", None, None, first=False)  # ...but a resumption is no start
    assert fresh.key_limit("open", None) == 1  # a key with no limit anywhere runs alone


# -- in one process -----------------------------------------------------------------------------
def test_queue_concurrency_limit_holds_in_one_process(make_app) -> None:
    app = make_app(concurrency=8)
    app.define_queue("narrow", concurrency=2)
    gauge = Gauge()

    @app.step()
    def work(i: int) -> int:
        gauge.enter()
        try:
            gauge.hold("all", 2, total=8)
        finally:
            gauge.leave()
        return i

    @app.workflow()
    def limited(i: int) -> int:
        return work(i)

    # started here, with a live worker: none may skip the limit by being claimed at insert
    handles = [app.start(limited, i, queue="narrow") for i in range(8)]
    assert [h.result(timeout=20) for h in handles] == list(range(8))
    assert gauge.max["all"] == 2


def test_per_key_concurrency(make_app) -> None:
    app = make_app(concurrency=16, worker=False)
    app.define_queue("tenants", key_concurrency=2)
    gauge = Gauge()

    @app.step()
    def work(key: str, limit: int, total: int) -> str:
        gauge.enter(key)
        try:
            gauge.hold(key, limit, total)
        finally:
            gauge.leave(key)
        return key

    @app.workflow()
    def per_tenant(key: str, limit: int, total: int) -> str:
        return work(key, limit, total)

    handles = [
        app.start(per_tenant, key, 2, 5, queue="tenants", concurrency_key=key)
        for key in ("a", "b")
        for _ in range(5)
    ]
    # a run's own key_limit wins over the queue's key_concurrency
    handles += [
        app.start(per_tenant, "c", 1, 3, queue="tenants", concurrency_key="c", key_limit=1)
        for _ in range(3)
    ]
    # a key with no limit anywhere runs one at a time
    handles += [app.start(per_tenant, "d", 1, 3, concurrency_key="d") for _ in range(3)]
    app.launch()  # every run is due at once: the first claim must admit within the limits
    for h in handles:
        h.result(timeout=20)
    assert gauge.max == {"a": 2, "b": 2, "c": 1, "d": 1}


def test_priorities_order_claims_within_a_limited_queue(make_app) -> None:
    app = make_app(concurrency=4, worker=False)
    app.define_queue("serial", concurrency=1)
    order: list[int] = []

    @app.workflow()
    def job(p: int) -> int:
        order.append(p)
        return p

    priorities = [1, 5, 3, 9, 0, 7]
    handles = [app.start(job, p, priority=p, queue="serial") for p in priorities]
    app.launch()
    for h in handles:
        h.result(timeout=20)
    assert order == sorted(priorities, reverse=True)


def test_rate_limit_wakes_the_worker_when_the_window_frees(make_app) -> None:
    # a poll interval far longer than the test: only the claim's hint can wake the worker
    app = make_app(poll_interval=30.0)
    app.define_queue("rated", rate_limit=2, rate_period=0.25)

    @app.workflow()
    def ping(i: int) -> int:
        return i

    handles = [app.start(ping, i, queue="rated") for i in range(6)]
    assert [h.result(timeout=10) for h in handles] == list(range(6))
    assert_rate_respected(started_times(app, "ping"), 2, 0.25)


def test_waiting_runs_hold_no_slot_and_resuming_takes_one(make_app) -> None:
    app = make_app(concurrency=8)
    app.define_queue("single", concurrency=1)
    gauge = Gauge()
    release = threading.Event()

    @app.step()
    def busy(name: str) -> str:
        gauge.enter(tag=name)
        try:
            if name == "holder":
                release.wait(10)
        finally:
            gauge.leave()
        return name

    @app.workflow()
    def waiter() -> Any:
        busy("before")
        decision = baton.wait_for_signal("go", timeout=30)
        busy("after")
        return decision

    @app.workflow()
    def other(name: str) -> str:
        return busy(name)

    waiting = app.start(waiter, queue="single")
    wait_until(lambda: waiting.status() == RunStatus.WAITING, what="the run to wait")
    # the waiting run holds no slot: another run of the queue gets it
    assert app.start(other, "quick", queue="single").result(timeout=10) == "quick"
    holder = app.start(other, "holder", queue="single")
    wait_until(lambda: "holder" in gauge.order, what="the holder to run")
    app.signal(waiting.id, "go", "yes")
    time.sleep(0.3)  # a chance to resume, which the limit must refuse while holder runs
    assert waiting.status() != RunStatus.RUNNING
    release.set()
    assert holder.result(timeout=10) == "holder"
    assert waiting.result(timeout=10) == "yes"
    assert gauge.max["all"] == 1
    assert gauge.order == ["before", "quick", "holder", "after"]


def test_debounce_keeps_one_run_with_the_last_input(make_app) -> None:
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    seen: list[str] = []

    @app.workflow()
    def reindex(doc: str) -> str:
        seen.append(doc)
        return doc

    first = app.start(reindex, "v1", debounce_key="doc-7", debounce=5.0)
    due = app.get_run(first.id).available_at
    clock.advance(2.0)
    second = app.start(reindex, "v2", debounce_key="doc-7", debounce=5.0)
    third = app.start(reindex, "v3", debounce_key="doc-7", debounce=5.0)
    assert second.id == third.id == first.id
    assert (first.created, second.created, third.created) == (True, False, False)
    run = app.get_run(first.id)
    assert run.available_at == pytest.approx(due + 2.0)  # pushed back by the later starts
    clock.advance(3.0)  # the first start's time: not due any more
    assert app.get_run(first.id).status == RunStatus.ENQUEUED
    clock.advance(2.5)
    assert first.result(timeout=10) == "v3"
    assert seen == ["v3"]
    assert len(app.runs(workflow="reindex")) == 1
    assert [e.type for e in app.events(run_id=first.id, type="baton.run.debounced")] == [
        "baton.run.debounced",
        "baton.run.debounced",
    ]
    # once the run has started, the key starts a new run
    later = app.start(reindex, "v4", debounce_key="doc-7", debounce=1.0)
    assert later.created and later.id != first.id
    clock.advance(1.5)
    assert later.result(timeout=10) == "v4"


def test_queue_limits_are_stored_for_every_process(make_app, store_path: Path) -> None:
    one = make_app(worker=False)
    assert one.get_queue("mail") is None
    queue = one.define_queue("mail", concurrency=3, rate_limit=10, rate_period=60)
    assert queue == baton.Queue("mail", concurrency=3, rate_limit=10, rate_period=60.0)
    other = make_app(worker=False)
    assert other.get_queue("mail") == queue
    other.define_queue("mail", key_concurrency=1)  # replaces the earlier limits
    assert one.get_queue("mail") == baton.Queue("mail", key_concurrency=1)
    assert [q.name for q in one.list_queues()] == ["mail"]


BAD_QUEUES: list[tuple[dict[str, Any], str, str]] = [
    ({"concurrency": 0}, "concurrency", "queue 'q': concurrency=0 must be a positive integer"),
    ({"concurrency": -2}, "concurrency", "concurrency=-2"),
    ({"concurrency": 1.5}, "concurrency", "concurrency=1.5"),
    ({"concurrency": True}, "concurrency", "concurrency=True"),
    ({"key_concurrency": 0}, "key_concurrency", "key_concurrency=0"),
    ({"rate_limit": 0}, "rate_limit", "rate_limit=0"),
    ({"rate_limit": 5, "rate_period": 0}, "rate_period", "rate_period=0 must be a positive"),
    ({"rate_limit": 5, "rate_period": -1.0}, "rate_period", "for rate_limit=5"),
    ({"rate_limit": 5, "rate_period": float("inf")}, "rate_period", "rate_period=inf"),
]


@pytest.mark.parametrize(("limits", "option", "message"), BAD_QUEUES)
def test_bad_queue_limits_are_refused_and_nothing_is_written(
    make_app, limits: dict[str, Any], option: str, message: str
) -> None:
    app = make_app(worker=False)
    with pytest.raises(baton.InvalidQueueLimit) as info:
        app.define_queue("q", **limits)
    assert info.value.option == option
    assert message in str(info.value)
    assert isinstance(info.value, baton.FlowControlError) and isinstance(info.value, ValueError)
    assert app.get_queue("q") is None


def test_a_queue_needs_a_name(make_app) -> None:
    app = make_app(worker=False)
    with pytest.raises(baton.InvalidQueueLimit, match="name=''"):
        app.define_queue("", concurrency=1)
    assert app.list_queues() == []


BAD_STARTS: list[tuple[dict[str, Any], str, str]] = [
    ({"concurrency_key": "k", "key_limit": 0}, "key_limit", "key_limit=0 must be an integer >= 1"),
    ({"concurrency_key": "k", "key_limit": 2.0}, "key_limit", "key_limit=2.0"),
    ({"key_limit": 2}, "key_limit", "key_limit=2 needs a concurrency_key"),
    ({"concurrency_key": ""}, "concurrency_key", "concurrency_key='' must be a non-empty"),
    ({"debounce": 5.0}, "debounce", "debounce=5.0 needs a debounce_key"),
    ({"debounce_key": "k"}, "debounce_key", "debounce_key='k' needs debounce="),
    ({"debounce_key": "k", "debounce": -1}, "debounce", "debounce=-1 must be a finite number"),
    ({"debounce_key": "k", "debounce": float("nan")}, "debounce", "debounce=nan"),
    ({"debounce_key": "k", "debounce": "5"}, "debounce", "debounce='5' must be a number"),
]


@pytest.mark.parametrize(("options", "option", "message"), BAD_STARTS)
def test_bad_start_options_are_refused_and_nothing_is_written(
    make_app, options: dict[str, Any], option: str, message: str
) -> None:
    app = make_app()

    @app.workflow()
    def job() -> None:
        return None

    with pytest.raises(baton.InvalidStartOption) as info:
        app.start(job, **options)
    assert info.value.option == option
    assert message in str(info.value)
    assert "start of workflow 'job'" in str(info.value)
    assert app.runs() == []


# -- across processes -----------------------------------------------------------------------------
@pytest.fixture
def probe(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "probe.db"
    open_probe(str(path)).close()
    yield path


@pytest.fixture
def spawn_workers(
    store_path: Path, probe: Path, tmp_path: Path
) -> Iterator[Callable[..., list[subprocess.Popen[str]]]]:
    procs: list[subprocess.Popen[str]] = []

    def spawn(count: int, *options: str) -> list[subprocess.Popen[str]]:
        """Start `count` workers and return once each one is ready."""
        for i in range(count):
            with (tmp_path / f"worker-{i}.stderr").open("w") as err:
                proc = subprocess.Popen(
                    [sys.executable, str(WORKER), str(store_path), str(probe), *options],
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                )
            procs.append(proc)
        for i, proc in enumerate(procs[-count:]):
            assert proc.stdout is not None
            line = proc.stdout.readline()
            err = (tmp_path / f"worker-{i}.stderr").read_text()
            assert line.strip() == "ready", f"worker {proc.pid} said {line!r}:\n{err}"
        return procs[-count:]

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def finish(procs: list[subprocess.Popen[str]], tmp_path: Path) -> None:
    for i, proc in enumerate(procs):
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"worker {proc.pid} did not finish") from None
        err = (tmp_path / f"worker-{i}.stderr").read_text()
        assert proc.returncode == 0, f"worker {proc.pid} exited {proc.returncode}:\n{err}"


def enqueue(app: baton.App, count: int, queue: str) -> None:
    @app.workflow(name="probe")
    def probe(i: int) -> int:  # the workers register the real one
        return i

    for i in range(count):
        app.start("probe", i, queue=queue)


def test_two_processes_never_exceed_a_queue_concurrency_limit(
    make_app, spawn_workers, probe: Path, tmp_path: Path
) -> None:
    app = make_app(worker=False)
    app.define_queue("shared", concurrency=3)
    # two slots per process: the third slot of the queue can only go to the other process,
    # and without the queue's limit the two would run four at once
    workers = spawn_workers(2, "--step-ms", "40", "--concurrency", "2", "--runs", "24")
    enqueue(app, 24, "shared")  # once both are polling
    finish(workers, tmp_path)

    runs = app.runs(workflow="probe", limit=100)
    assert len(runs) == 24 and {r.status for r in runs} == {RunStatus.SUCCEEDED}
    with sqlite3.connect(probe) as conn:
        peak, samples = conn.execute("SELECT MAX(running), COUNT(*) FROM samples").fetchone()
        pids = {pid for (pid,) in conn.execute("SELECT DISTINCT pid FROM samples")}
    assert samples == 24
    assert pids == {w.pid for w in workers}
    assert 2 <= peak <= 3


def test_two_processes_share_one_rate_window(make_app, spawn_workers, tmp_path: Path) -> None:
    app = make_app(worker=False)
    app.define_queue("rated", rate_limit=3, rate_period=0.4)
    workers = spawn_workers(2, "--step-ms", "0", "--concurrency", "8", "--runs", "10")
    enqueue(app, 10, "rated")
    finish(workers, tmp_path)

    runs = app.runs(workflow="probe", limit=100)
    assert len(runs) == 10 and {r.status for r in runs} == {RunStatus.SUCCEEDED}
    # each run started once, so its started_at is the claim of its first start
    assert_rate_respected(started_times(app, "probe"), 3, 0.4)
