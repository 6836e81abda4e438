"""Baton benchmark: orchestration overhead per step, in-process and durable (SQLite).

A workflow calls K trivial steps one after another and times every step call from inside
the workflow (``time.perf_counter()`` around the call). The step body does nothing, so the
time is Baton's own work: planning the call, encoding the output, and the durable commit of
the step's checkpoint (a fresh SQLite file, WAL, the default ``synchronous=FULL``). One run
is a warm-up; the figures cover the next ``--runs`` runs (K x runs step calls in all).

Both flavours are measured: a sync workflow calling a sync step, and an ``async def``
workflow awaiting an ``async def`` step.

Usage::

    .venv/bin/python benchmarks/step_overhead.py --workdir /tmp/batonbench --steps 200 --runs 10

Prints one JSON object to stdout; progress goes to stderr.
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

DB_FILE = "baton_step_overhead.db"


def build_workflows(app: baton.App) -> dict[str, Callable[[int], Any]]:
    """Register a sync and an async K-step workflow on `app`; each returns its timings (s)."""

    @app.step()
    def noop(i: int) -> int:
        return i

    @app.step()
    async def anoop(i: int) -> int:
        return i

    @app.workflow()
    def k_steps(k: int) -> list[float]:
        timings = []
        for i in range(k):
            t0 = time.perf_counter()
            noop(i)
            timings.append(time.perf_counter() - t0)
        return timings

    @app.workflow()
    async def k_steps_async(k: int) -> list[float]:
        timings = []
        for i in range(k):
            t0 = time.perf_counter()
            await anoop(i)
            timings.append(time.perf_counter() - t0)
        return timings

    return {"sync": k_steps, "async": k_steps_async}


def log(message: str) -> None:
    print(f"[baton-step-overhead] {message}", file=sys.stderr, flush=True)


def summarize(timings: list[float]) -> dict[str, float]:
    """Percentiles (inclusive method, like the workload scripts) and mean, in ms."""
    cuts = statistics.quantiles(timings, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49] * 1000, 4),
        "p95_ms": round(cuts[94] * 1000, 4),
        "p99_ms": round(cuts[98] * 1000, 4),
        "mean_ms": round(statistics.fmean(timings) * 1000, 4),
        "max_ms": round(max(timings) * 1000, 4),
    }


def measure(app: baton.App, workflow: Callable[[int], Any], steps: int, runs: int) -> list[float]:
    app.run(workflow, steps)  # warm-up, not counted
    timings: list[float] = []
    for _ in range(runs):
        timings.extend(app.run(workflow, steps))
    return timings


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="directory for the SQLite DB")
    parser.add_argument("--steps", type=int, default=200, help="steps per workflow (K)")
    parser.add_argument("--runs", type=int, default=10, help="measured workflow runs")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.runs < 1 or args.steps * args.runs < 2:
        parser.error("--steps and --runs must be positive (and at least 2 step calls)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db_path = workdir / DB_FILE
    for suffix in ("", "-wal", "-shm", "-journal"):
        (workdir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)

    app = baton.App(db_path)  # defaults: synchronous=FULL
    workflows = build_workflows(app)
    results: dict[str, Any] = {}
    try:
        log(f"Baton {baton.__version__} on {db_path}: {args.runs} runs x {args.steps} steps")
        for flavour, workflow in workflows.items():
            timings = measure(app, workflow, args.steps, args.runs)
            results[flavour] = {"step_calls": len(timings), **summarize(timings)}
            log(f"{flavour}: {results[flavour]}")
    finally:
        app.shutdown()

    output = {
        "system": f"Baton {baton.__version__} (SQLite)",
        "steps_per_workflow": args.steps,
        "runs": args.runs,
        **results,
    }
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
