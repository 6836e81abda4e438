"""Peer benchmark: DBOS Transact on a SQLite (or PostgreSQL) system database.

Measures the throughput and latency of a three-step durable workflow
(``three_steps(i)`` = i + 3, one trivial step per increment) in two phases:

* ``sequential``: N workflows called directly one after another, each timed from call
  to return (throughput, p50 and p95 latency).
* ``concurrent``: N workflows started at once with ``DBOS.start_workflow`` and then
  awaited with ``get_result()`` (total seconds and throughput).

DBOS runs with its default configuration apart from the system database URL and the log
level. Its workflow executor is unbounded by default (``max_executor_threads`` unset), so
it is not an artificial cap. Runs only in the peers virtualenv (``.venv-peers``,
``pip install dbos==3.4.0``); it imports nothing from Baton.

With ``--database-url postgresql://USER@HOST:PORT/DB`` the system database is on
PostgreSQL instead of a SQLite file: a fresh database ``baton_bench_dbos_<random>`` is
created on that server (through DB, with psycopg) for the run and dropped afterwards, so a
run never sees an earlier run's rows. DBOS's defaults hold there too (its connection pool of
20, LISTEN/NOTIFY).

Usage::

    .venv-peers/bin/python benchmarks/peers/dbos_workload.py \\
        --workdir /tmp/dbosbench --sequential 500 --concurrent 2000 \\
        [--database-url postgresql://postgres@127.0.0.1:5432/test]

Prints one JSON object to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """Create an empty database on `server_url`'s server for one run; yield its URL; drop it."""
    import psycopg  # DBOS's own PostgreSQL driver, installed with it

    name = f"baton_bench_dbos_{secrets.token_hex(4)}"
    parts = urlsplit(server_url)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def measure(system_database_url: str, sequential: int, concurrent: int) -> dict[str, Any] | None:
    """Launch DBOS on `system_database_url`, run both phases; None if a result was wrong."""
    config: DBOSConfig = {
        "name": APP_NAME,
        "system_database_url": system_database_url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    try:
        DBOS.launch()
        log(f"launched DBOS {version('dbos')} on {system_database_url}")
        warm_up(WARMUP)
        log(f"warm-up done ({WARMUP} sequential + {WARMUP} started)")

        seq, seq_errors = run_sequential(sequential)
        log(f"sequential: {seq}")
        conc, conc_errors = run_concurrent(concurrent)
        log(f"concurrent: {conc}")
    finally:
        DBOS.destroy()
    if seq_errors + conc_errors:
        log(f"FAILED: {seq_errors + conc_errors} workflows returned a wrong result")
        return None
    return {"sequential": seq, "concurrent": conc}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True, help="directory for the SQLite DB")
    parser.add_argument("--sequential", type=int, default=500, help="sequential workflows")
    parser.add_argument("--concurrent", type=int, default=2000, help="concurrent workflows")
    parser.add_argument(
        "--database-url",
        help="a postgresql:// URL: put the system database on that server (a fresh database "
        "per run, dropped after) instead of a SQLite file in --workdir",
    )
    args = parser.parse_args(argv)
    if args.sequential < 1 or args.concurrent < 1:
        parser.error("--sequential and --concurrent must be positive")
    if args.database_url and not args.database_url.startswith(("postgresql://", "postgres://")):
        parser.error("--database-url must be a postgresql:// URL")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    if args.database_url:
        try:
            with fresh_postgres_database(args.database_url) as url:
                figures = measure(url, args.sequential, args.concurrent)
        except Exception as exc:  # no server, no rights, DBOS failed: this run did not happen
            log(f"DBOS on PostgreSQL at {args.database_url} failed: {exc!r}")
            return 2
        backend = "PostgreSQL"
    else:
        workdir: Path = args.workdir.resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        db_path = workdir / DB_FILE
        for suffix in ("", "-wal", "-shm", "-journal"):
            (workdir / f"{DB_FILE}{suffix}").unlink(missing_ok=True)
        figures = measure(f"sqlite:///{db_path}", args.sequential, args.concurrent)
        backend = "SQLite"

    if figures is None:
        return 1
    output = {"system": f"DBOS Transact {version('dbos')} ({backend})", **figures}
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
