"""A Baton worker process for the crash tests, run as `python child.py STORE LOG MODE ...`.

It registers two workflows of three sync steps each, `three(i)` (sync) and `three_async(i)`
(async), and then either

* `submit --jobs 0,1,2`: starts one run per job with the idempotency key `job-<i>` (so a
  resubmission after a crash finds the existing run) and waits until they all end; or
* `recover`: launches a worker and waits until no run in the store is unfinished.

Every step execution first appends `<pid> <run_id> <seq>` to the side-effect LOG (opened with
O_APPEND, fsynced before the step goes on), so an execution killed half-way is still logged.

Crash hooks (test code, not engine code): `--kill-in-step2 J` makes the process SIGKILL
itself in the middle of step 2 of job J; `--kill-after-step1 J` makes the workflow body
SIGKILL the process after step 1 of job J returned (its checkpoint is committed by then)
and before step 2 is called. `--shutdown-after K` calls `app.shutdown()` once K step
executions have started, instead of waiting for the runs.

The process prints `ready` on stdout once the store is open and before it submits or
launches anything, then `started <job> <run_id>` as each `app.start()` returns.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time

import baton

UNFINISHED = ["ENQUEUED", "RUNNING", "WAITING", "COMPENSATING"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("mode", choices=["submit", "recover"])
    parser.add_argument("--jobs", default="", help="comma-separated job numbers")
    parser.add_argument(
        "--variant",
        choices=["sync", "async", "mixed"],
        default="sync",
        help="workflow for new runs; mixed: sync for even jobs, async for odd ones",
    )
    parser.add_argument("--step-ms", type=float, default=5.0, help="mean step duration")
    parser.add_argument("--kill-in-step2", type=int, default=None)
    parser.add_argument("--kill-after-step1", type=int, default=None)
    parser.add_argument("--shutdown-after", type=int, default=None)
    return parser.parse_args(argv)


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)  # never reached: SIGKILL is not delivered late, but do not go on if it were


def main(argv: list[str]) -> int:
    opts = parse(argv)
    app = baton.App(opts.store, poll_interval=0.05)
    log_fd = os.open(opts.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random()
    lock = threading.Lock()
    started_steps = [0]
    enough_steps = threading.Event()

    def side_effect(seq: int) -> None:
        """Log this execution durably, then spend a little time 'working'."""
        ctx = baton.current_run()
        assert ctx is not None and ctx.seq == seq, "a step must execute inside its run"
        line = f"{os.getpid()} {ctx.run_id} {seq}\n".encode()
        os.write(log_fd, line)  # one write on an O_APPEND descriptor: one whole line
        os.fsync(log_fd)
        with lock:
            started_steps[0] += 1
            if opts.shutdown_after is not None and started_steps[0] >= opts.shutdown_after:
                enough_steps.set()

    def work() -> None:
        time.sleep(rng.uniform(0, 2 * opts.step_ms) / 1000)

    @app.step(name="first")
    def first(i: int) -> int:
        side_effect(1)
        work()
        return i + 1

    @app.step(name="second")
    def second(i: int, a: int) -> int:
        side_effect(2)
        work()
        if i == opts.kill_in_step2:
            die()
        work()
        return a * 2

    @app.step(name="third")
    def third(i: int, b: int) -> int:
        side_effect(3)
        work()
        return b + 3

    @app.workflow(name="three")
    def three(i: int) -> dict:
        a = first(i)
        if i == opts.kill_after_step1:
            die()
        b = second(i, a)
        c = third(i, b)
        return {"job": i, "value": c}

    @app.workflow(name="three_async")
    async def three_async(i: int) -> dict:
        a = await first(i)
        if i == opts.kill_after_step1:
            die()
        b = await second(i, a)
        c = await third(i, b)
        return {"job": i, "value": c}

    def workflow_for(i: int) -> str:
        variant = opts.variant
        if variant == "mixed":
            variant = "sync" if i % 2 == 0 else "async"
        return "three" if variant == "sync" else "three_async"

    print("ready", flush=True)
    if opts.mode == "submit":
        jobs = [int(j) for j in opts.jobs.split(",") if j]
        handles = []
        for i in jobs:
            handle = app.start(workflow_for(i), i, idempotency_key=f"job-{i}")
            print(f"started {i} {handle.id}", flush=True)  # acknowledged: the run is durable
            handles.append(handle)
        if opts.shutdown_after is not None:
            if not enough_steps.wait(60):
                print("never reached the shutdown point", file=sys.stderr)
                return 3
            app.shutdown(timeout=30)
            return 0
        for handle in handles:
            handle.result()
    else:
        app.launch()
        while app.runs(status=UNFINISHED, limit=1):
            time.sleep(0.02)
    app.shutdown(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
