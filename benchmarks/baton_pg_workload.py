"""Baton benchmark on PostgreSQL: the workload of ``baton_workload.py``, in 1 to N processes.

The same durable workflow of three trivial steps (``three_steps(i)`` = i + 3), on a Baton
store in a fresh schema ``bench_<random>`` of the database at ``--store`` (created by Baton
on open, dropped at the end), after a warm-up of 20 sequential + 20 started workflows:

* ``--workers 0`` (in-process): one process, ``baton.App(url)`` with its default worker,
  starts and executes every run. Phases: ``sequential`` (N runs one after another with
  ``app.run``: throughput, p50, p95) and ``concurrent`` (N runs started at once with
  ``app.start``, then every ``handle.result()`` awaited: seconds and throughput).
* ``--workers N`` (N >= 1): the submitting process is ``baton.App(url, worker=False)``: it
  only starts runs and awaits their results; N separate worker processes (this script with
  ``--serve``, each ``baton.App(url)`` with the same workflow registered and
  ``app.launch()``) execute them. The clock starts once every worker has launched (its row is
  in the store's ``workers`` table, its LISTEN connection is up) and the warm-up has gone
  through them. Only the ``concurrent`` phase runs (a sequential run waiting on another
  process measures the result poll, not the engine).

Baton runs with its defaults everywhere (store: group-commit writer, 4 pooled readers;
worker: concurrency 64, poll_interval 1.0 s, heartbeat 2 s); nothing is tuned. Every result
is checked (exit status 1 if one is wrong) and so is the store afterwards (every run
SUCCEEDED). Worker processes log to ``--workdir``/worker-K.log (Baton's JSON logs, level
WARNING unless BATON_LOG_LEVEL says otherwise); their lines are copied to stderr and counted
in the result.

Usage::

    .venv/bin/python benchmarks/baton_pg_workload.py \\
        --store postgresql://postgres@127.0.0.1:5432/test --workdir /tmp/batonpg \\
        [--workers 0|1|2] [--sequential 500] [--concurrent 2000] [--async]

Prints one JSON object to stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import psycopg
from baton_workload import WARMUP, build_workflow, run_sequential, warm_up

import baton

READY_TIMEOUT_S = 120.0  # for every worker process to launch
STOP_TIMEOUT_S = 60.0  # for every worker process to shut down once told


def log(message: str) -> None:
    print(f"[baton-pg-bench] {message}", file=sys.stderr, flush=True)


def with_schema(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, f"schema={schema}"]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def drop_schema(server_url: str, schema: str) -> None:
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# -- worker processes ----------------------------------------------------------------------


def serve(store_url: str, use_async: bool) -> int:
    """A worker process: launch, say "ready", execute runs until stdin closes, shut down."""
    app = baton.App(store_url)  # defaults: concurrency 64, poll_interval 1.0 s
    build_workflow(app, use_async)
    app.launch()  # returns once this worker's row is written and it listens for new work
    print("ready", flush=True)
    try:
        sys.stdin.read()  # the benchmark closes our stdin when it is done
    finally:
        app.shutdown()
    return 0


class Workers:
    """N worker processes of this script (``--serve``), their logs in files in `workdir`."""

    def __init__(self, count: int, store_url: str, use_async: bool, workdir: Path) -> None:
        self.logs = [workdir / f"worker-{k + 1}.log" for k in range(count)]
        self.procs: list[subprocess.Popen[str]] = []
        command = [sys.executable, __file__, "--serve", "--store", store_url]
        command += ["--async"] if use_async else []
        for path in self.logs:
            with path.open("w") as err:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=err,
                        text=True,
                    )
                )

    def wait_ready(self, timeout: float) -> None:
        """Read every worker's "ready" line; raise if one exits or is late."""
        lines: dict[int, str] = {}

        def read(k: int, out: IO[str]) -> None:
            lines[k] = out.readline().strip()

        threads = []
        for k, proc in enumerate(self.procs):
            assert proc.stdout is not None
            thread = threading.Thread(target=read, args=(k, proc.stdout), daemon=True)
            thread.start()
            threads.append(thread)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for k in range(len(self.procs)):
            if lines.get(k) != "ready":
                raise RuntimeError(f"worker {k + 1} did not launch (see {self.logs[k]})")

    def stop(self) -> list[int | None]:
        """Close every worker's stdin, wait for it to shut down (kill it if late)."""
        for proc in self.procs:
            if proc.stdin is not None and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        codes: list[int | None] = []
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                codes.append(proc.wait(max(0.1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append(None)
        return codes

    def log_lines(self) -> list[str]:
        lines = []
        for k, path in enumerate(self.logs):
            if path.exists():
                lines += [f"[worker {k + 1}] {x}" for x in path.read_text().splitlines() if x]
        return lines


def wait_registered(app: baton.App, pids: list[int], timeout: float) -> float:
    """Wait until a worker of every pid is in the store's workers table; the seconds taken."""
    t0 = time.monotonic()
    while True:
        present = {w.pid for w in app.store.list_workers()}
        if set(pids) <= present:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"worker pids {pids} not registered after {timeout:.0f} s")
        time.sleep(0.05)


def run_concurrent(
    app: baton.App, workflow: Callable[[int], Any], count: int
) -> tuple[dict[str, Any], int]:
    """``baton_workload.run_concurrent``, also timing the caller's loop of starts alone."""
    phase_start = time.perf_counter()
    handles = [app.start(workflow, i) for i in range(count)]
    started = time.perf_counter() - phase_start
    results = [handle.result() for handle in handles]
    seconds = time.perf_counter() - phase_start
    errors = sum(1 for i, result in enumerate(results) if result != i + 3)
    report = {
        "workflows": count,
        "seconds": round(seconds, 4),
        "throughput": round(count / seconds, 2),
        "start_seconds": round(started, 4),
    }
    return report, errors


# -- checks --------------------------------------------------------------------------------


def store_check(server_url: str, schema: str) -> dict[str, Any]:
    """Run statuses and how many runs each worker started, read straight from the schema."""
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        statuses = dict(conn.execute("SELECT status, count(*) FROM runs GROUP BY status"))
        rows = conn.execute("SELECT data FROM events WHERE type = 'baton.run.started'")
        started = Counter(
            (json.loads(data) if isinstance(data, str) else data).get("worker", "?")
            for (data,) in rows.fetchall()
        )
    # how many runs each process started, largest first (worker ids differ between runs)
    return {"statuses": statuses, "starts_per_worker": sorted(started.values(), reverse=True)}


# -- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--store",
        required=True,
        help="postgresql:// URL of the database (a fresh schema is made in it for the run)",
    )
    parser.add_argument("--workdir", type=Path, help="directory for the worker logs")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes (0: the submitting process executes the runs itself)",
    )
    parser.add_argument("--sequential", type=int, default=500, help="sequential workflows")
    parser.add_argument("--concurrent", type=int, default=2000, help="concurrent workflows")
    parser.add_argument(
        "--async",
        dest="use_async",
        action="store_true",
        help="an async workflow with async steps instead of the sync one",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # a worker
    args = parser.parse_args(argv)
    if not args.store.startswith(("postgresql://", "postgres://")):
        parser.error("--store must be a postgresql:// URL")
    if args.serve:
        return args
    if any(key == "schema" for key, _ in parse_qsl(urlsplit(args.store).query)):
        parser.error("--store must not name a schema: the benchmark makes a fresh one")
    if args.workdir is None:
        parser.error("--workdir is required")
    if args.sequential < 1 or args.concurrent < 1 or args.workers < 0:
        parser.error("counts must be positive (--workers at least 0)")
    return args


def bench(args: argparse.Namespace, store_url: str, schema: str) -> tuple[dict[str, Any], int]:
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    flavour = "async" if args.use_async else "sync"
    plural = "es" if args.workers > 1 else ""
    mode = "in-process" if args.workers == 0 else f"{args.workers} worker process{plural}"
    output: dict[str, Any] = {
        "system": f"Baton {baton.__version__} (PostgreSQL)",
        "variant": f"{flavour} workflow, {mode}",
        "workers": args.workers,
    }
    errors = 0
    workers: Workers | None = None
    t0 = time.monotonic()
    app = baton.App(store_url, worker=args.workers == 0)  # makes the schema and its tables
    try:
        workflow = build_workflow(app, args.use_async)
        log(f"Baton {baton.__version__} ({flavour} workflow, {mode}) on {app.store.location}")
        if args.workers:
            workers = Workers(args.workers, store_url, args.use_async, workdir)
            workers.wait_ready(READY_TIMEOUT_S)
            pids = [proc.pid for proc in workers.procs]
            registered = wait_registered(app, pids, READY_TIMEOUT_S)
            output["workers_ready_s"] = round(time.monotonic() - t0, 3)
            log(
                f"{args.workers} worker(s) ready after {output['workers_ready_s']:.2f} s "
                f"(registered {registered:.2f} s after saying so)"
            )
        else:
            app.launch()
        warm_up(app, workflow, WARMUP)
        log(f"warm-up done ({WARMUP} sequential + {WARMUP} started)")

        if args.workers == 0:
            sequential, seq_errors = run_sequential(app, workflow, args.sequential)
            log(f"sequential: {sequential}")
            output["sequential"] = sequential
            errors += seq_errors
        concurrent, conc_errors = run_concurrent(app, workflow, args.concurrent)
        log(f"concurrent: {concurrent}")
        output["concurrent"] = concurrent
        errors += conc_errors
    finally:
        codes = workers.stop() if workers is not None else []
        app.shutdown()
        levels = echo_logs(workers, workdir) if workers is not None else {}
    expected = 2 * WARMUP + args.concurrent + (args.sequential if args.workers == 0 else 0)
    check = store_check(args.store, schema)
    check["expected"] = expected
    wrong_store = check["statuses"] != {"SUCCEEDED": expected}
    if wrong_store:
        log(f"FAILED: the store holds {check['statuses']}, expected {expected} SUCCEEDED")
        errors += 1
    if workers is not None:
        check["worker_exit_codes"] = codes
        check["worker_log_lines"] = levels
        if any(code != 0 for code in codes):
            log(f"worker exit codes: {codes}")
    output["store_check"] = check
    log(f"store check: {check}")
    return output, errors


def echo_logs(workers: Workers, workdir: Path, shown: int = 50) -> dict[str, int]:
    """Copy the workers' log lines to stderr (the first `shown`); count them by level."""
    lines = workers.log_lines()
    for line in lines[:shown]:
        print(line, file=sys.stderr)
    if len(lines) > shown:
        log(f"... {len(lines) - shown} more worker log lines in {workdir}")
    return dict(Counter(_level(line) for line in lines))


def _level(line: str) -> str:
    try:
        return str(json.loads(line.split("] ", 1)[1]).get("level", "?"))
    except (IndexError, ValueError, AttributeError):
        return "text"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.serve:
        return serve(args.store, args.use_async)
    schema = f"bench_{secrets.token_hex(4)}"
    store_url = with_schema(args.store, schema)
    try:
        output, errors = bench(args, store_url, schema)
    finally:
        try:
            drop_schema(args.store, schema)
        except psycopg.Error as exc:
            log(f"could not drop schema {schema}: {exc}")
    if errors:
        log(f"FAILED: {errors} wrong results or store checks")
        return 1
    print(json.dumps(output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
