"""A worker process for the gather crash tests: `python fanout.py STORE LOG MODE ...`.

`fan(i)` (sync) and `fan_async(i)` (async) run, in this order:

* seq 1-4: `baton.gather` of four `part(i, k)` steps and (seq 5, 6) a child run `leaf(i)`;
* seq 7-9: `baton.map(square, [i, i + 1, i + 2], concurrency=2)`;

and return `expected_output(i)`. `leaf(i)` runs one step, `leaf_step(i)`.

`submit --jobs 0,1,2` starts one run per job (idempotency key `job-<i>`) and waits for them;
`recover` serves until no run in the store is unfinished. Every step execution first appends
`<pid> <run_id> <seq>` to LOG (fsynced), so an execution killed half-way is still logged.

Crash hook (test code, not engine code): `--kill-in-gather J` makes part 2 of job J SIGKILL the
process once parts 0 and 1 have their checkpoints committed and part 3 is running (it would
take 60 s). The process prints `ready` once the store is open, then `started <job> <run_id>`
as each `app.start()` returns.
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
PARTS = 4


def expected_output(i: int) -> dict:
    return {
        "job": i,
        "parts": [10 * i + k for k in range(PARTS)],
        "leaf": i + 1000,
        "squares": [(i + k) ** 2 for k in range(3)],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("mode", choices=["submit", "recover"])
    parser.add_argument("--jobs", default="")
    parser.add_argument("--variant", choices=["sync", "async", "mixed"], default="mixed")
    parser.add_argument("--step-ms", type=float, default=5.0, help="mean step duration")
    parser.add_argument("--kill-in-gather", type=int, default=None)
    opts = parser.parse_args(argv)
    app = baton.App(opts.store, poll_interval=0.05)
    log_fd = os.open(opts.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    rng = random.Random()
    last_part_running = threading.Event()

    def effect() -> baton.RunContext:
        ctx = baton.current_run()
        assert ctx is not None and ctx.seq is not None, "a step must execute inside its run"
        os.write(log_fd, f"{os.getpid()} {ctx.run_id} {ctx.seq}\n".encode())
        os.fsync(log_fd)
        return ctx

    def work() -> None:
        time.sleep(rng.uniform(0, 2 * opts.step_ms) / 1000)

    def die_when_parts_recorded(run_id: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = {s.seq for s in app.steps(run_id) if s.status == "SUCCEEDED"}
            if {1, 2} <= done and last_part_running.is_set():
                os.kill(os.getpid(), signal.SIGKILL)
                time.sleep(60)  # not reached
            time.sleep(0.005)
        print("never reached the kill point", file=sys.stderr)

    @app.step(name="part")
    def part(i: int, k: int) -> int:
        ctx = effect()
        if i == opts.kill_in_gather and k == 2:
            die_when_parts_recorded(ctx.run_id)
        if i == opts.kill_in_gather and k == 3:
            last_part_running.set()
            time.sleep(60)  # still running when part 2 kills the process
        work()
        return 10 * i + k

    @app.step(name="square")
    def square(x: int) -> int:
        effect()
        work()
        return x * x

    @app.step(name="leaf_step")
    def leaf_step(i: int) -> int:
        effect()
        work()
        return i + 1000

    @app.workflow(name="leaf")
    def leaf(i: int) -> int:
        return leaf_step(i)

    @app.workflow(name="fan")
    def fan(i: int) -> dict:
        *parts, leaf_out = baton.gather(
            *(part.defer(i, k) for k in range(PARTS)), baton.child(leaf, i)
        )
        squares = baton.map(square, [i, i + 1, i + 2], concurrency=2)
        return {"job": i, "parts": parts, "leaf": leaf_out, "squares": squares}

    @app.workflow(name="fan_async")
    async def fan_async(i: int) -> dict:
        *parts, leaf_out = await baton.gather(
            *(part(i, k) for k in range(PARTS)), baton.child(leaf, i)
        )
        squares = await baton.map(square, [i, i + 1, i + 2], concurrency=2)
        return {"job": i, "parts": parts, "leaf": leaf_out, "squares": squares}

    def workflow_for(i: int) -> str:
        variant = opts.variant
        if variant == "mixed":
            variant = "sync" if i % 2 == 0 else "async"
        return "fan" if variant == "sync" else "fan_async"

    print("ready", flush=True)
    if opts.mode == "submit":
        handles = []
        for i in [int(j) for j in opts.jobs.split(",") if j]:
            handle = app.start(workflow_for(i), i, idempotency_key=f"job-{i}")
            print(f"started {i} {handle.id}", flush=True)
            handles.append(handle)
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
