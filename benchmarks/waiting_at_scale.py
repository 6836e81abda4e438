"""Baton benchmark: many runs waiting at once on one node (SQLite), then all woken.

One process, one ``baton.App`` on a fresh SQLite file with its defaults (WAL,
``synchronous=FULL``, concurrency 64). N runs (default 100,000) of a sync workflow
``wait_then_finish(i, kind)`` are started one after another by one caller; each calls one
trivial step (``bump(i)`` = i + 1) and then waits:

* even i (``kind="sleep"``): ``baton.sleep(3600)``;
* odd i (``kind="approval"``): ``baton.wait_for_approval("ok", timeout=86400)``, a pending
  approval with a one-day timeout, so that it too is a WAITING run with a timer in the store.

and then returns ``(i + 1) * 2`` (``-(i + 1)`` if the approval was not granted).

The clock is the wall clock plus an offset (``JumpClock``): no sleep can end while the runs
are started and measured, and jumping it forward an hour and a second wakes every sleeper at
once while every approval's timeout stays a day away. Measured:

* ``start``: time for the N ``app.start`` calls (each returns after its durable commit), and
  time from the first start until ``app.store.count_runs()`` reports all N WAITING;
* ``waiting``: with all N waiting, the process RSS (current, after a ``gc.collect()``, and the
  peak so far from ``getrusage``), its threads (``threading.active_count()`` and psutil's
  ``num_threads()``) and the asyncio tasks on the worker's loop, next to the same figures
  taken before the first start: the threads may grow only by the workflow pool (at most
  ``concurrency`` = 64 threads, made on demand) and the tasks by at most 2, whatever N;
* ``wake``: the clock jumped, time until every sleeper has SUCCEEDED; then each pending
  approval decided with ``app.approve(run_id, "ok")`` by one caller (pages of ``app.approvals``),
  timed as decisions/s, and time from the first decision until every run has SUCCEEDED;
* ``verify``: every run read back (pages of ``app.store.list_runs``) and its output checked
  against its input.

The harness keeps nothing per run while the runs wait (handles are dropped; the run ids for
the decisions come from ``app.approvals``), so the RSS is Baton's.

Usage::

    .venv/bin/python benchmarks/waiting_at_scale.py --workdir /tmp/batonbench [--runs 100000]

Prints one JSON object to stdout; progress goes to stderr. Exits non-zero only when the
benchmark could not run (a run stuck, failed or wrong), never for a missed bar.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import resource
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

import baton
from baton.core import serialization
from baton.core.clock import RealClock

DB_FILE = "baton_waiting.db"
SLEEP_S = 3600.0  # clock time each sleeper sleeps
APPROVAL_TIMEOUT_S = 86400.0  # far beyond the clock's advance: no approval times out
APPROVAL = "ok"
RSS_BAR_MB = 300.0
CONCURRENCY = 64  # the App's default: its workflow thread pool is at most this large
EXTRA_TASKS = 2  # loop tasks allowed beyond the idle worker's (a claim or sweep in flight)
PAGE = 5000  # approvals decided / runs verified per read
STALL_S = 120.0  # no progress for this long: the benchmark cannot run
POLL_S = 0.25
MB = 1024 * 1024


class JumpClock(RealClock):
    """Wall time plus an offset that the benchmark moves forward: a real clock that can jump.

    Unlike ``baton.VirtualClock``, time keeps running between jumps, so retries, heartbeats
    and polls behave as on a real node while the sleepers' hour passes at once.
    """

    def __init__(self) -> None:
        self._offset = 0.0

    def now(self) -> float:
        return time.time() + self._offset

    def jump(self, seconds: float) -> None:
        self._offset += seconds


class Stuck(Exception):
    """Runs stopped making progress, or ended in a wrong state."""


def log(message: str) -> None:
    print(f"[waiting-bench] {message}", file=sys.stderr, flush=True)


def build_workflow(app: baton.App) -> Callable[..., Any]:
    @app.step()
    def bump(x: int) -> int:
        return x + 1

    @app.workflow()
    def wait_then_finish(i: int, kind: str) -> int:
        x = bump(i)
        if kind == "sleep":
            baton.sleep(SLEEP_S)
            return x * 2
        decision = baton.wait_for_approval(APPROVAL, timeout=APPROVAL_TIMEOUT_S)
        return x * 2 if decision.approved else -x

    return wait_then_finish


def expected(i: int) -> int:
    return (i + 1) * 2


# -- process figures -----------------------------------------------------------------------


def loop_tasks(app: baton.App) -> int | None:
    """Number of asyncio tasks on the worker's event loop (read on that loop)."""
    runtime = app._runtime
    if runtime is None:
        return None

    async def count() -> int:
        return len(asyncio.all_tasks())

    return asyncio.run_coroutine_threadsafe(count(), runtime._loop).result(10)


def process_figures(app: baton.App, proc: psutil.Process) -> dict[str, Any]:
    rss = proc.memory_info().rss
    gc.collect()
    rss_gc = proc.memory_info().rss
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runtime = app._runtime
    return {
        "rss_mb": round(rss / MB, 1),
        "rss_after_gc_mb": round(rss_gc / MB, 1),
        # the kernel's high-water mark (KiB) can lag the current figure by a few pages
        "peak_rss_mb": round(max(peak_kib * 1024, rss, rss_gc) / MB, 1),
        "threads_python": threading.active_count(),
        "threads_os": proc.num_threads(),
        "loop_tasks": loop_tasks(app),
        "active_executions": None if runtime is None else runtime.active_count(),
        # one float per sleeping run that this worker suspended (its local "look again at")
        "local_due_timers": None if runtime is None else len(runtime._local_due),
    }


# -- phases --------------------------------------------------------------------------------


def wait_for(app: baton.App, status: str, target: int, what: str) -> float:
    """Poll the store until `target` runs have `status`; return when, or raise Stuck."""
    last, last_change, last_log = -1, time.perf_counter(), 0.0
    while True:
        counts = app.store.count_runs()
        now = time.perf_counter()
        bad = {s: counts[s] for s in ("FAILED", "DEAD", "CANCELLED") if counts.get(s)}
        if bad:
            raise Stuck(f"{what}: runs ended badly: {bad}")
        done = counts.get(status, 0)
        if done >= target:
            return now
        if done != last:
            last, last_change = done, now
        elif now - last_change > STALL_S:
            raise Stuck(f"{what}: stuck at {done:,} of {target:,} {status} ({counts})")
        if now - last_log >= 10:
            log(f"  {what}: {done:,} / {target:,} {status}  {counts}")
            last_log = now
        time.sleep(POLL_S)


def start_all(app: baton.App, workflow: Callable[..., Any], runs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    for i in range(runs):
        app.start(workflow, i, "sleep" if i % 2 == 0 else "approval")
        if (i + 1) % 10_000 == 0:
            log(f"  started {i + 1:,} ({(i + 1) / (time.perf_counter() - t0):,.0f}/s)")
    started = time.perf_counter()
    log(f"started {runs:,} runs in {started - t0:.1f} s; waiting for all to be WAITING")
    all_waiting = wait_for(app, "WAITING", runs, "to WAITING")
    return {
        "runs": runs,
        "start_seconds": round(started - t0, 3),
        "start_rate": round(runs / (started - t0), 1),
        "all_waiting_seconds": round(all_waiting - t0, 3),
        "all_waiting_rate": round(runs / (all_waiting - t0), 1),
    }


def wake_sleepers(app: baton.App, clock: JumpClock, sleepers: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    clock.jump(SLEEP_S + 1)
    app._wake_worker()  # else the worker's dispatcher notices within its poll interval (1 s)
    done = wait_for(app, "SUCCEEDED", sleepers, "sleepers to SUCCEEDED")
    return {
        "runs": sleepers,
        "seconds": round(done - t0, 3),
        "rate": round(sleepers / (done - t0), 1),
    }


def decide_approvals(app: baton.App, approvals: int, total: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    decided = 0
    while True:
        page = app.approvals("PENDING", limit=PAGE)
        if not page:
            break
        for approval in page:
            app.approve(approval.run_id, APPROVAL)
        decided += len(page)
        log(f"  decided {decided:,} ({decided / (time.perf_counter() - t0):,.0f}/s)")
    decisions_done = time.perf_counter()
    if decided != approvals:
        raise Stuck(f"decided {decided:,} approvals, expected {approvals:,}")
    done = wait_for(app, "SUCCEEDED", total, "approved runs to SUCCEEDED")
    return {
        "runs": approvals,
        "decision_seconds": round(decisions_done - t0, 3),
        "decisions_per_s": round(approvals / (decisions_done - t0), 1),
        "seconds": round(done - t0, 3),
        "rate": round(approvals / (done - t0), 1),
    }


def verify(app: baton.App, runs: int) -> dict[str, Any]:
    """Read every run back; its output must be derived from its input and its kind."""
    checked = wrong = 0
    kinds = {"sleep": 0, "approval": 0}
    before: str | None = None
    while True:
        page = app.store.list_runs(None, None, PAGE, before)
        if not page:
            break
        for run in page:
            i, kind = serialization.loads(run.input)["args"]
            checked += 1
            kinds[kind] = kinds.get(kind, 0) + 1
            if run.status != "SUCCEEDED" or serialization.loads(run.output) != expected(i):
                wrong += 1
        before = page[-1].run_id
    half = runs // 2
    ok = checked == runs and wrong == 0 and kinds == {"sleep": runs - half, "approval": half}
    return {"runs": checked, "wrong": wrong, "kinds": kinds, "all_correct": ok}


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="directory for the SQLite DB")
    parser.add_argument("--runs", type=int, default=100_000, help="runs waiting at once")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / DB_FILE
    for suffix in ("", "-wal", "-shm", "-journal"):
        (workdir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)

    proc = psutil.Process()
    runs, approvals = args.runs, args.runs // 2
    sleepers = runs - approvals
    clock = JumpClock()
    app = baton.App(db_path, clock=clock, concurrency=CONCURRENCY)  # the defaults
    workflow = build_workflow(app)
    try:
        app.launch()
        log(
            f"Baton {baton.__version__}: {runs:,} runs ({sleepers:,} sleep, {approvals:,} "
            f"approval) on {db_path}"
        )
        baseline = process_figures(app, proc)
        log(f"before the first start: {baseline}")

        start = start_all(app, workflow, runs)
        log(f"start: {start}")
        waiting = process_figures(app, proc)
        waiting["db_mb"] = round(
            sum(
                os.path.getsize(f"{db_path}{s}")
                for s in ("", "-wal")
                if os.path.exists(f"{db_path}{s}")
            )
            / MB,
            1,
        )
        log(f"all {runs:,} waiting: {waiting}")

        sleep_wake = wake_sleepers(app, clock, sleepers)
        log(f"sleepers woken: {sleep_wake}")
        approval_wake = decide_approvals(app, approvals, runs)
        log(f"approvals decided: {approval_wake}")
        after = process_figures(app, proc)
        log(f"after: {after}")
        check = verify(app, runs)
        log(f"verify: {check}")
    except Stuck as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        app.shutdown()

    if not check["all_correct"]:
        log(f"FAILED: not every run woke correctly: {check}")
        return 1
    wake_seconds = sleep_wake["seconds"] + approval_wake["seconds"]
    extra_threads = waiting["threads_os"] - baseline["threads_os"]
    extra_tasks = (waiting["loop_tasks"] or 0) - (baseline["loop_tasks"] or 0)
    output = {
        "system": f"Baton {baton.__version__} (SQLite)",
        "workload": {
            "runs": runs,
            "sleepers": sleepers,
            "approvals": approvals,
            "sleep_s": SLEEP_S,
            "approval_timeout_s": APPROVAL_TIMEOUT_S,
            "clock": "wall clock, jumped forward to end the sleeps",
        },
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
        },
        "baseline": baseline,
        "start": start,
        "waiting": waiting,
        "wake_sleepers": sleep_wake,
        "wake_approvals": approval_wake,
        "wake": {"seconds": round(wake_seconds, 3), "rate": round(runs / wake_seconds, 1)},
        "after": after,
        "verify": check,
        "bar": {
            "rss_limit_mb": RSS_BAR_MB,
            "rss_mb": waiting["rss_mb"],
            "rss_met": waiting["rss_mb"] <= RSS_BAR_MB,
            "peak_rss_mb": waiting["peak_rss_mb"],
            "extra_threads": extra_threads,
            "extra_tasks": extra_tasks,
            "no_thread_or_task_per_run": extra_threads <= CONCURRENCY
            and extra_tasks <= EXTRA_TASKS,
            "all_woke_correctly": check["all_correct"],
            "met": waiting["rss_mb"] <= RSS_BAR_MB
            and extra_threads <= CONCURRENCY
            and extra_tasks <= EXTRA_TASKS
            and check["all_correct"],
        },
    }
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
