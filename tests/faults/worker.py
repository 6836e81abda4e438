"""A Baton worker process for the fault tests: `python worker.py URL LOGDIR [options]`.

It serves one workflow, `three(job, plan)`: three steps, step k sleeping a random time in
`plan[k-1] = [low_ms, high_ms]` (with `[low_ms, high_ms, 1]`, it then waits until the file
`LOGDIR/open-<pid>` exists: the test opens the gate); each step returns its value and the
pid that executed it, and the run's result is
`{"job": job, "value": (job + 1) * 2 + 3, "by": [pid1, pid2, pid3]}`.

The process appends to `LOGDIR/<pid>.log`, one line per fact, with one `write` on an
O_APPEND descriptor (so a SIGKILL leaves whole lines):

* `exec <pid> <run_id> <seq> <fence>` when a step starts executing;
* `wrote <pid> <run_id> <what> <fence>` when the store confirmed a checkpoint (`what` is the
  step's seq) or the run's completion (`what` is `end`);
* `fenced <pid> <run_id> <what> <fence>` when the store refused one (FenceLost);
* `error <pid> <run_id> <what> <fence> <type>` when the write failed otherwise.

These come from wrapping the store's `save_step` and `finish_run` in this process: test
instrumentation, not engine code. The process prints `ready <worker_id>` once its worker
runs, and shuts down gracefully (exit 0, `bye`) when its stdin is closed. SIGUSR1 makes it
print every thread's stack to stderr.
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import baton
from baton.core.errors import FenceLost
from baton.engine.execution import current


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("logdir")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--heartbeat", type=float, default=0.2)
    parser.add_argument("--ttl", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    opts = parse(argv)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks when stuck
    app = baton.App(
        opts.url,
        concurrency=opts.concurrency,
        poll_interval=opts.poll,
        heartbeat_interval=opts.heartbeat,
        worker_ttl=opts.ttl,
    )
    pid = os.getpid()
    log_fd = os.open(
        os.path.join(opts.logdir, f"{pid}.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
    )
    rng = random.Random()
    rng_lock = threading.Lock()

    def note(*fields: object) -> None:
        os.write(log_fd, (" ".join(str(f) for f in fields) + "\n").encode())

    def watch(name: str, describe: Callable[..., tuple[str, object, int]]) -> None:
        """Log what the store answered to each `name` write of this process."""
        original = getattr(app.store, name)

        def wrapped(*args: Any, **kwargs: Any) -> Future:
            run_id, what, fence = describe(*args, **kwargs)
            fut = original(*args, **kwargs)

            def answered(f: Future) -> None:
                exc = f.exception()
                if exc is None:
                    note("wrote", pid, run_id, what, fence)
                elif isinstance(exc, FenceLost):
                    note("fenced", pid, run_id, what, fence)
                else:
                    note("error", pid, run_id, what, fence, type(exc).__name__)

            fut.add_done_callback(answered)
            return fut

        setattr(app.store, name, wrapped)

    watch("save_step", lambda fence, step, *_a, **_k: (step.run_id, step.seq, fence))
    watch("finish_run", lambda run_id, fence, *_a, **_k: (run_id, "end", fence))

    def work(seq: int, plan: list[list[float]]) -> None:
        ctx = baton.current_run()
        ex = current.get()
        assert ctx is not None and ex is not None and ctx.seq == seq
        note("exec", pid, ctx.run_id, seq, ex.fence)
        low, high, *gated = plan[seq - 1]
        with rng_lock:
            pause = rng.uniform(low, high) / 1000
        time.sleep(pause)
        gate = os.path.join(opts.logdir, f"open-{pid}")
        while gated and gated[0] and not os.path.exists(gate):
            time.sleep(0.01)

    @app.step(name="first")
    def first(job: int, plan: list[list[float]]) -> list[int]:
        work(1, plan)
        return [job + 1, pid]

    @app.step(name="second")
    def second(job: int, plan: list[list[float]], a: int) -> list[int]:
        work(2, plan)
        return [a * 2, pid]

    @app.step(name="third")
    def third(job: int, plan: list[list[float]], b: int) -> list[int]:
        work(3, plan)
        return [b + 3, pid]

    @app.workflow(name="three")
    def three(job: int, plan: list[list[float]]) -> dict:
        a, p1 = first(job, plan)
        b, p2 = second(job, plan, a)
        c, p3 = third(job, plan, b)
        return {"job": job, "value": c, "by": [p1, p2, p3]}

    app.launch()
    runtime = app._runtime
    assert runtime is not None
    print("ready", runtime.worker_id, flush=True)
    sys.stdin.read()  # until the test closes our stdin
    app.shutdown(timeout=20)
    print("bye", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
