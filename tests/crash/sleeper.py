"""A worker process for the waiting crash tests: `python sleeper.py STORE LOG MODE [--jobs N]`.

`napper(i)` runs step `first` (seq 1), sleeps durably for --sleep seconds (seq 2), runs step
`second` (seq 3), waits for signal "go" (seq 4) and returns i * 10 + the signal's payload.
`submit` starts N runs (idempotency key `nap-<i>`) and then serves them; `recover` serves
until no run is unfinished. Every step execution appends `<pid> <run_id> <seq>` to LOG (fsynced)
before it returns. The process prints `ready` once the store is open.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import baton

UNFINISHED = ["ENQUEUED", "RUNNING", "WAITING", "COMPENSATING"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("log")
    parser.add_argument("mode", choices=["submit", "recover"])
    parser.add_argument("--jobs", type=int, default=0)
    parser.add_argument("--sleep", type=float, default=1.0)
    opts = parser.parse_args(argv)
    app = baton.App(opts.store, poll_interval=0.05)
    log_fd = os.open(opts.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def effect(seq: int) -> None:
        ctx = baton.current_run()
        assert ctx is not None
        os.write(log_fd, f"{os.getpid()} {ctx.run_id} {seq}\n".encode())
        os.fsync(log_fd)

    @app.step(name="first")
    def first(i: int) -> int:
        effect(1)
        return i * 10

    @app.step(name="second")
    def second(x: int) -> int:
        effect(3)
        return x

    @app.workflow(name="napper")
    def napper(i: int) -> int:
        x = first(i)
        baton.sleep(opts.sleep)
        x = second(x)
        return x + baton.wait_for_signal("go")

    print("ready", flush=True)
    if opts.mode == "submit":
        for i in range(opts.jobs):
            handle = app.start(napper, i, idempotency_key=f"nap-{i}")
            print(f"started {i} {handle.id}", flush=True)
    else:
        app.launch()
    while app.runs(UNFINISHED, limit=1):
        time.sleep(0.02)
    app.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
