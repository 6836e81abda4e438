"""A Baton worker process for the flow-control tests: `python flow_worker.py STORE PROBE`.

It registers the workflow `probe(i)` of one step, `work(i)`, launches a worker on STORE and
exits once `--runs` probe runs exist and none is unfinished. Each execution of `work` counts
itself in and out of a gauge kept in the separate SQLite file PROBE (under that file's write
lock), and records how many executions were in progress, across all processes, once it was
counted in.

It prints `ready` once its worker is launched.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time

import baton

UNFINISHED = ["ENQUEUED", "RUNNING", "WAITING", "COMPENSATING"]


def open_probe(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS gauge (id INTEGER PRIMARY KEY CHECK (id = 1), running INTEGER)"
    )
    conn.execute("INSERT OR IGNORE INTO gauge (id, running) VALUES (1, 0)")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS samples (pid INTEGER, job INTEGER, running INTEGER, at REAL)"
    )
    return conn


def enter(probe: str, job: int) -> None:
    conn = open_probe(probe)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE gauge SET running = running + 1")
        (running,) = conn.execute("SELECT running FROM gauge").fetchone()
        conn.execute(
            "INSERT INTO samples (pid, job, running, at) VALUES (?, ?, ?, ?)",
            (os.getpid(), job, running, time.time()),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def leave(probe: str) -> None:
    conn = open_probe(probe)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE gauge SET running = running - 1")
        conn.execute("COMMIT")
    finally:
        conn.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("store")
    parser.add_argument("probe")
    parser.add_argument("--step-ms", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, required=True)
    parser.add_argument("--give-up-after", type=float, default=60.0)
    opts = parser.parse_args(argv)

    app = baton.App(opts.store, concurrency=opts.concurrency, poll_interval=0.05)

    @app.step(name="work")
    def work(i: int) -> int:
        enter(opts.probe, i)
        try:
            time.sleep(opts.step_ms / 1000)
        finally:
            leave(opts.probe)  # before the step's checkpoint, so before the slot is freed
        return i

    @app.workflow(name="probe")
    def probe(i: int) -> int:
        return work(i)

    app.launch()
    print("ready", flush=True)
    deadline = time.monotonic() + opts.give_up_after
    while len(app.runs(workflow="probe", limit=opts.runs)) < opts.runs or app.runs(
        status=UNFINISHED, workflow="probe", limit=1
    ):
        if time.monotonic() > deadline:
            print("runs still unfinished", file=sys.stderr)
            app.shutdown(timeout=5)
            return 3
        time.sleep(0.02)
    app.shutdown(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
