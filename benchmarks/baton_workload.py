"""Baton benchmark: the same workload as ``benchmarks/peers/dbos_workload.py``, on SQLite.

A durable workflow of three trivial steps (``three_steps(i)`` = i + 3, one step per
increment), in two phases after a warm-up of 20 sequential + 20 started workflows:

* ``sequential``: N workflows run one after another (``app.run``), each timed from call
  to return (throughput, p50 and p95 latency).
* ``concurrent``: N workflows started at once with ``app.start`` and then every result
  awaited with ``handle.result()`` (total seconds and throughput).

Baton runs with its defaults: a fresh SQLite file, WAL, ``synchronous=FULL``, the default
worker concurrency. ``--async`` uses an ``async def`` workflow whose ``async def`` steps are
awaited instead of the sync workflow with sync steps.

Usage::

    .venv/bin/python benchmarks/baton_workload.py \\
        --workdir /tmp/batonbench --sequential 500 --concurrent 2000 [--async]

Prints one JSON object to stdout (the peer script's shape); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import baton

DB_FILE = "baton_bench.db"
WARMUP = 20


def build_workflow(app: baton.App, use_async: bool) -> Callable[[int], Any]:
    """Register the three-step workflow (sync or async flavour) on `app` and return it."""
    if use_async:

        @app.step()
        async def step_one(x: int) -> int:
            return x + 1

        @app.step()
        async def step_two(x: int) -> int:
            return x + 1

        @app.step()
        async def step_three(x: int) -> int:
            return x + 1

        @app.workflow()
        async def three_steps(i: int) -> int:
            return await step_three(await step_two(await step_one(i)))

        return three_steps

    @app.step()
    def sync_step_one(x: int) -> int:
        return x + 1

    @app.step()
    def sync_step_two(x: int) -> int:
        return x + 1

    @app.step()
    def sync_step_three(x: int) -> int:
        return x + 1

    @app.workflow()
    def sync_three_steps(i: int) -> int:
        return sync_step_three(sync_step_two(sync_step_one(i)))

    return sync_three_steps


def log(message: str) -> None:
    print(f"[baton-bench] {message}", file=sys.stderr, flush=True)


def percentile_ms(values: list[float], pct: int) -> float:
    """The pct-th percentile of values (seconds) in ms, linearly interpolated like numpy."""
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1000


def warm_up(app: baton.App, workflow: Callable[[int], Any], count: int) -> None:
    for i in range(count):
        assert app.run(workflow, i) == i + 3
    handles = [app.start(workflow, i) for i in range(count)]
    for i, handle in enumerate(handles):
        assert handle.result() == i + 3


def run_sequential(
    app: baton.App, workflow: Callable[[int], Any], count: int
) -> tuple[dict[str, Any], int]:
    latencies: list[float] = []
    errors = 0
    phase_start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        result = app.run(workflow, i)
        latencies.append(time.perf_counter() - t0)
        if result != i + 3:
            errors += 1
    seconds = time.perf_counter() - phase_start
    report = {
        "workflows": count,
        "seconds": round(seconds, 4),
        "throughput": round(count / seconds, 2),
        "p50_ms": round(percentile_ms(latencies, 50), 3),
        "p95_ms": round(percentile_ms(latencies, 95), 3),
    }
    return report, errors


def run_concurrent(
    app: baton.App, workflow: Callable[[int], Any], count: int
) -> tuple[dict[str, Any], int]:
    phase_start = time.perf_counter()
    handles = [app.start(workflow, i) for i in range(count)]
    results = [handle.result() for handle in handles]
    seconds = time.perf_counter() - phase_start
    errors = sum(1 for i, result in enumerate(results) if result != i + 3)
    report = {
        "workflows": count,
        "seconds": round(seconds, 4),
        "throughput": round(count / seconds, 2),
    }
    return report, errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="directory for the SQLite DB")
    parser.add_argument("--sequential", type=int, default=500, help="sequential workflows")
    parser.add_argument("--concurrent", type=int, default=2000, help="concurrent workflows")
    parser.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="an async workflow with async steps instead of the sync one",
    )
    args = parser.parse_args(argv)
    if args.sequential < 1 or args.concurrent < 1:
        parser.error("--sequential and --concurrent must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / DB_FILE
    for suffix in ("", "-wal", "-shm", "-journal"):
        (workdir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)

    flavour = "async" if args.use_async else "sync"
    app = baton.App(db_path)  # defaults: synchronous=FULL, default concurrency
    workflow = build_workflow(app, args.use_async)
    try:
        log(f"Baton {baton.__version__} ({flavour} workflow) on {db_path}")
        warm_up(app, workflow, WARMUP)
        log(f"warm-up done ({WARMUP} sequential + {WARMUP} started)")

        sequential, seq_errors = run_sequential(app, workflow, args.sequential)
        log(f"sequential: {sequential}")
        concurrent, conc_errors = run_concurrent(app, workflow, args.concurrent)
        log(f"concurrent: {concurrent}")
        errors = seq_errors + conc_errors
    finally:
        app.shutdown()

    if errors:
        log(f"FAILED: {errors} workflows returned a wrong result")
        return 1
    output = {
        "system": f"Baton {baton.__version__} (SQLite)",
        "variant": f"{flavour} workflow, {flavour} steps",
        "sequential": sequential,
        "concurrent": concurrent,
    }
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
