"""A Baton worker process for the saga crash tests, run as `python saga_child.py STORE LOG MODE`.

It registers two workflows, `trip(i)` (sync) and `trip_async(i)` (async), that call three
steps, `reserve`, `book` and `charge`, each with a compensation (`unreserve`, `unbook`,
`refund`), and then fail: every run ends COMPENSATED, its compensations running in reverse
order as checkpoints -3, -2, -1. Modes, as in child.py:

* `submit --jobs 0,1,2`: starts one run per job (idempotency key `job-<i>`) and waits until
  they all end; or
* `recover`: launches a worker and waits until no run in the store is unfinished.

Every step and compensation execution first appends `<pid> <run_id> <seq>` to the
side-effect LOG (O_APPEND, fsynced), with the compensation's own (negative) seq.

Crash hook (test code, not engine code): `--kill-in-undo J` makes the process SIGKILL itself
in the middle of the compensation of step 2 (checkpoint -2) of job J; `--undo-ms` is the mean
duration of a compensation, so that random kills land in them too.

The process prints `ready` once the store is open, then `started <job> <run_id>` per start.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time

import baton

UNFINISHED = ["ENQUEUED", "RUNNING", "WAITING", "COMPENSATING"]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("mode", choices=["submit", "recover"])
    parser.add_argument("--jobs", default="")
    parser.add_argument("--variant", choices=["sync", "async", "mixed"], default="sync")
    parser.add_argument("--step-ms", type=float, default=2.0)
    parser.add_argument("--undo-ms", type=float, default=2.0)
    parser.add_argument("--kill-in-undo", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    opts = parse(argv)
    app = baton.App(opts.store, poll_interval=0.05)
    log_fd = os.open(opts.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random()

    def side_effect(seq: int) -> None:
        ctx = baton.current_run()
        assert ctx is not None and ctx.seq == seq, "a step must execute inside its run"
        os.write(log_fd, f"{os.getpid()} {ctx.run_id} {seq}\n".encode())
        os.fsync(log_fd)

    def work(mean_ms: float) -> None:
        time.sleep(rng.uniform(0, 2 * mean_ms) / 1000)

    def forward(seq: int, i: int) -> str:
        side_effect(seq)
        work(opts.step_ms)
        return f"{seq}-{i}"

    def undo(seq: int, i: int) -> None:
        side_effect(-seq)
        work(opts.undo_ms)
        if seq == 2 and i == opts.kill_in_undo:
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # never reached
        work(opts.undo_ms)

    @app.step(name="unreserve")
    def unreserve(i: int) -> None:
        undo(1, i)

    @app.step(name="unbook")
    def unbook(i: int) -> None:
        undo(2, i)

    @app.step(name="refund")
    def refund(i: int) -> None:
        undo(3, i)

    @app.step(name="reserve", compensate=unreserve)
    def reserve(i: int) -> str:
        return forward(1, i)

    @app.step(name="book", compensate=unbook)
    def book(i: int) -> str:
        return forward(2, i)

    @app.step(name="charge", compensate=refund)
    def charge(i: int) -> str:
        return forward(3, i)

    @app.workflow(name="trip")
    def trip(i: int) -> None:
        reserve(i)
        book(i)
        charge(i)
        raise RuntimeError(f"trip {i} cannot go ahead")

    @app.workflow(name="trip_async")
    async def trip_async(i: int) -> None:
        await reserve(i)
        await book(i)
        await charge(i)
        raise RuntimeError(f"trip {i} cannot go ahead")

    def workflow_for(i: int) -> str:
        variant = opts.variant
        if variant == "mixed":
            variant = "sync" if i % 2 == 0 else "async"
        return "trip" if variant == "sync" else "trip_async"

    print("ready", flush=True)
    if opts.mode == "submit":
        handles = []
        for i in (int(j) for j in opts.jobs.split(",") if j):
            handle = app.start(workflow_for(i), i, idempotency_key=f"job-{i}")
            print(f"started {i} {handle.id}", flush=True)
            handles.append(handle)
        for handle in handles:
            try:
                handle.result()
            except baton.RunFailed as exc:
                if exc.status != "COMPENSATED":
                    raise
    else:
        app.launch()
        while app.runs(status=UNFINISHED, limit=1):
            time.sleep(0.02)
    app.shutdown(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
