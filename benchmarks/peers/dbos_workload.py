"""Peer benchmark: DBOS Transact on a SQLite system database.

Measures the throughput and latency of a three-step durable workflow
(``three_steps(i)`` = i + 3, one trivial step per increment) in two phases:

* ``sequential``: N workflows called directly one after another, each timed from call
  to return (throughput, p50 and p95 latency).
* ``concurrent``: N workflows started at once with ``DBOS.start_workflow`` and then
  awaited with ``get_result()`` (total seconds and throughput).

DBOS runs with its default configuration apart from the SQLite system database URL and
the log level. Its workflow executor is unbounded by default (``max_executor_threads``
unset), so it is not an artificial cap. Runs only in the peers virtualenv
(``.venv-peers``, ``pip install dbos==3.4.0``); it imports nothing from Baton.

Usage::

    .venv-peers/bin/python benchmarks/peers/dbos_workload.py \\
        --workdir /tmp/dbosbench --sequential 500 --concurrent 2000

Prints one JSON object to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from dbos import DBOS, DBOSConfig

APP_NAME = "baton-peer-bench"
DB_FILE = "dbos_bench.sqlite"
WARMUP = 20


@DBOS.step()
def step_one(x: int) -> int:
    return x + 1


@DBOS.step()
def step_two(x: int) -> int:
    return x + 1


@DBOS.step()
def step_three(x: int) -> int:
    return x + 1


@DBOS.workflow()
def three_steps(i: int) -> int:
    return step_three(step_two(step_one(i)))


def log(message: str) -> None:
    print(f"[dbos-bench] {message}", file=sys.stderr, flush=True)


def percentile_ms(values: list[float], pct: int) -> float:
    """The pct-th percentile of values (seconds) in ms, linearly interpolated like numpy."""
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1] * 1000


def warm_up(count: int) -> None:
    for i in range(count):
        assert three_steps(i) == i + 3
    handles = [DBOS.start_workflow(three_steps, i) for i in range(count)]
    for i, handle in enumerate(handles):
        assert handle.get_result() == i + 3


def run_sequential(count: int) -> tuple[dict[str, Any], int]:
    latencies: list[float] = []
    errors = 0
    phase_start = time.perf_counter()
    for i in range(count):
        t0 = time.perf_counter()
        result = three_steps(i)
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


def run_concurrent(count: int) -> tuple[dict[str, Any], int]:
    phase_start = time.perf_counter()
    handles = [DBOS.start_workflow(three_steps, i) for i in range(count)]
    results = [handle.get_result() for handle in handles]
    seconds = time.perf_counter() - phase_start
    errors = sum(1 for i, result in enumerate(results) if result != i + 3)
    report = {
        "workflows": count,
        "seconds": round(seconds, 4),
        "throughput": round(count / seconds, 2),
    }
    return report, errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="directory for the SQLite DB")
    parser.add_argument("--sequential", type=int, default=500, help="sequential workflows")
    parser.add_argument("--concurrent", type=int, default=2000, help="concurrent workflows")
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

    logging.getLogger("dbos").setLevel(logging.WARNING)
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    errors = 0
    try:
        DBOS.launch()
        log(f"launched DBOS {version('dbos')} on {db_path}")
        warm_up(WARMUP)
        log(f"warm-up done ({WARMUP} sequential + {WARMUP} started)")

        sequential, seq_errors = run_sequential(args.sequential)
        log(f"sequential: {sequential}")
        concurrent, conc_errors = run_concurrent(args.concurrent)
        log(f"concurrent: {concurrent}")
        errors = seq_errors + conc_errors
    finally:
        DBOS.destroy()

    if errors:
        log(f"FAILED: {errors} workflows returned a wrong result")
        return 1
    output = {
        "system": f"DBOS Transact {version('dbos')} (SQLite)",
        "sequential": sequential,
        "concurrent": concurrent,
    }
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
