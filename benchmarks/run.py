"""Run Baton's durable-workflow benchmarks against DBOS Transact and report the ratios.

Each system runs as its own subprocess on the same workload (``baton_workload.py`` with
this interpreter, ``peers/dbos_workload.py`` with ``--peer-python``), back to back in one
run, followed by ``step_overhead.py``. With ``--rounds N`` the systems are interleaved N
times (alternating which goes first) and every figure is the median over the rounds. Then
``waiting_at_scale.py`` runs once (its bar is absolute, with no peer): ``--waiting-runs``
runs asleep or awaiting approval at once, then all woken.

When a PostgreSQL server answers at ``--pg-dsn`` (default: $BATON_BENCH_PG_DSN, else
postgresql://postgres@127.0.0.1:5432/test), each round also runs the concurrent workload
on PostgreSQL: DBOS with its system database there (``peers/dbos_workload.py
--database-url``, a fresh database per run) and Baton (``baton_pg_workload.py``, a fresh
schema per run) in one process, with 1 worker process and with 2. Without a server that
part is skipped, visibly. ``agents_bench.py`` (once) measures the agent supervisor against
plain ``threading`` and ``multiprocessing``. ``control_bench.py`` (once) measures the control
plane over loopback: REST run submissions, batched event ingest and WebSocket fan-out, against
the bars of BENCHMARKS.md (no peer). ``--only sqlite|pg|waiting|agents|control`` runs one
part alone.

The report prints the workload, the machine, each system's figures and the ratios against
the bars of ``BENCHMARKS.md``; the full results go to ``benchmarks/.work/results.json``.
The exit status is non-zero only when a benchmark could not run, never for a missed bar.

Usage::

    .venv/bin/python benchmarks/run.py --peer-python .venv-peers/bin/python \\
        [--sequential 500] [--concurrent 2000] [--steps 200] [--runs 10] [--rounds 1] \\
        [--waiting-runs 100000] [--pg-dsn postgresql://...] \\
        [--only all|sqlite|pg|waiting|agents|control]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
BATON_SCRIPT = HERE / "baton_workload.py"
PEER_SCRIPT = HERE / "peers" / "dbos_workload.py"
PG_SCRIPT = HERE / "baton_pg_workload.py"
STEP_SCRIPT = HERE / "step_overhead.py"
WAITING_SCRIPT = HERE / "waiting_at_scale.py"
TIMEOUT_S = 1800
WAITING_TIMEOUT_S = 7200  # 100,000 runs started, woken and decided one by one, durably

CONCURRENT_BAR = 20.0  # Baton throughput / DBOS throughput, at least
SEQUENTIAL_BAR = 5.0  # DBOS p50 / Baton p50, at least
STEP_P95_BAR_MS = 1.0  # Baton per-step p95, below
WAITING_RSS_BAR_MB = 300.0  # RSS with every run waiting, at most
PG_CONCURRENT_BAR = 10.0  # Baton throughput / DBOS throughput on PostgreSQL, at least
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PARTS = ("sqlite", "pg", "waiting", "agents", "control")
AGENTS_SCRIPT = HERE / "agents_bench.py"
CONTROL_SCRIPT = HERE / "control_bench.py"
CONTROL_RUNS_BAR = 1000.0  # run submissions over REST on loopback, runs/s, at least
CONTROL_INGEST_BAR = 20_000.0  # batched event ingest, events/s, at least
AGENT_RESTART_BAR_MS = 50.0  # a crashed agent restarted within, after its exit
AGENT_QUEUED_BAR_MS = 20.0  # a queued agent started within, after a slot frees
# Baton on PostgreSQL: key, label, worker processes (0: the submitting process executes)
PG_MODES = (
    ("baton_pg_inproc", "in-process", 0),
    ("baton_pg_w1", "1 worker process", 1),
    ("baton_pg_w2", "2 worker processes", 2),
)


class BenchmarkFailed(Exception):
    """A benchmark subprocess did not produce its result."""


@dataclass(frozen=True)
class Job:
    key: str
    label: str
    command: list[str]
    timeout: float = TIMEOUT_S


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--peer-python",
        type=Path,
        default=Path(".venv-peers/bin/python"),
        help="interpreter of the peers virtualenv (with dbos installed)",
    )
    parser.add_argument("--sequential", type=int, default=500, help="sequential workflows")
    parser.add_argument("--concurrent", type=int, default=2000, help="concurrent workflows")
    parser.add_argument("--steps", type=int, default=200, help="steps per step-overhead run")
    parser.add_argument("--runs", type=int, default=10, help="measured step-overhead runs")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median)")
    parser.add_argument(
        "--waiting-runs", type=int, default=100_000, help="runs waiting at once (run once)"
    )
    parser.add_argument("--workdir", type=Path, default=WORK, help="databases and results.json")
    parser.add_argument(
        "--pg-dsn",
        default=os.environ.get("BATON_BENCH_PG_DSN") or DEFAULT_PG_DSN,
        help="PostgreSQL database for the PostgreSQL part (fresh schemas and databases are "
        "made on it and dropped); default $BATON_BENCH_PG_DSN, else " + DEFAULT_PG_DSN,
    )
    parser.add_argument(
        "--only",
        choices=("all", *PARTS),
        default="all",
        help="run one part: sqlite (workloads and step overhead), pg, waiting, agents, control; "
        "default all",
    )
    args = parser.parse_args(argv)
    if min(args.sequential, args.concurrent, args.steps, args.runs, args.rounds) < 1:
        parser.error("every count must be positive")
    if args.waiting_runs < 2:
        parser.error("--waiting-runs must be at least 2")
    return args


# -- running -------------------------------------------------------------------------------


def run_json(job: Job, console: Console) -> dict[str, Any]:
    """Run one benchmark subprocess (its stderr passes through) and parse its JSON line."""
    console.print(f"[bold]>>> {job.label}[/]", highlight=False)
    console.file.flush()
    try:
        proc = subprocess.run(
            job.command,
            stdout=subprocess.PIPE,
            text=True,
            timeout=job.timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkFailed(f"{job.label}: {exc}") from None
    if proc.returncode != 0:
        raise BenchmarkFailed(f"{job.label}: exit status {proc.returncode}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise BenchmarkFailed(f"{job.label}: no JSON result on stdout") from None


def build_jobs(args: argparse.Namespace, workdir: Path, round_no: int) -> list[Job]:
    """One round's SQLite jobs."""
    sizes = ["--sequential", str(args.sequential), "--concurrent", str(args.concurrent)]
    baton = [sys.executable, str(BATON_SCRIPT), "--workdir", str(workdir / "baton"), *sizes]
    dbos = [str(args.peer_python), str(PEER_SCRIPT), "--workdir", str(workdir / "dbos"), *sizes]
    step = [sys.executable, str(STEP_SCRIPT), "--workdir", str(workdir / "baton")]
    step += ["--steps", str(args.steps), "--runs", str(args.runs)]
    pair = [
        Job("baton_sync", "Baton, sync workflow", baton),
        Job("dbos", "DBOS Transact (peer)", dbos),
    ]
    if round_no % 2:  # alternate who goes first
        pair.reverse()
    return [
        *pair,
        Job("baton_async", "Baton, async workflow", [*baton, "--async"]),
        Job("step_overhead", "Baton step overhead", step),
    ]


def build_pg_jobs(args: argparse.Namespace, workdir: Path, round_no: int) -> list[Job]:
    """One round's PostgreSQL jobs: DBOS, then Baton in its three modes (reversed on odd
    rounds, so that no system always goes first)."""
    sizes = ["--sequential", str(args.sequential), "--concurrent", str(args.concurrent)]
    dbos = [str(args.peer_python), str(PEER_SCRIPT), "--workdir", str(workdir / "dbos"), *sizes]
    dbos += ["--database-url", args.pg_dsn]
    jobs = [Job("dbos_pg", "DBOS Transact on PostgreSQL (peer)", dbos)]
    for key, label, workers in PG_MODES:
        command = [sys.executable, str(PG_SCRIPT), "--store", args.pg_dsn, *sizes]
        command += ["--workdir", str(workdir / "baton_pg"), "--workers", str(workers)]
        jobs.append(Job(key, f"Baton on PostgreSQL, {label}", command))
    if round_no % 2:
        jobs.reverse()
    return jobs


def agents_job() -> Job:
    command = [sys.executable, str(AGENTS_SCRIPT), "--rounds", "3"]
    return Job("agents", "Baton agents against plain threading / multiprocessing", command)


def control_job(workdir: Path) -> Job:
    command = [sys.executable, str(CONTROL_SCRIPT), "--workdir", str(workdir)]
    return Job("control", "Baton control plane over loopback (REST, ingest, WebSocket)", command)


def waiting_job(args: argparse.Namespace, workdir: Path) -> Job:
    command = [sys.executable, str(WAITING_SCRIPT), "--workdir", str(workdir / "baton")]
    command += ["--runs", str(args.waiting_runs)]
    return Job("waiting", "Baton waiting at scale", command, WAITING_TIMEOUT_S)


def median_merge(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One result of the same shape: numbers are the median over rounds, the rest as is."""
    first = results[0]
    merged: dict[str, Any] = {}
    for key, value in first.items():
        if any(key not in r for r in results):  # not in every round: the first round's
            merged[key] = value
        elif isinstance(value, dict):
            merged[key] = median_merge([r[key] for r in results])
        elif isinstance(value, int | float) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in results)
        else:
            merged[key] = value
    return merged


# -- the machine ---------------------------------------------------------------------------


def interpreter_info(python: Path | str) -> dict[str, str]:
    code = (
        "import json, sqlite3, sys; "
        "print(json.dumps({'python': sys.version.split()[0], 'sqlite': sqlite3.sqlite_version}))"
    )
    proc = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise BenchmarkFailed(f"{python} does not run: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout)


def raw_sqlite_commits(workdir: Path, commits: int = 2000) -> float:
    """Durable single-row commits per second on this disk (WAL, synchronous=FULL)."""
    path = workdir / "raw_sqlite.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("CREATE TABLE t (x INTEGER)")
        t0 = time.perf_counter()
        for i in range(commits):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (?)", (i,))
            conn.execute("COMMIT")
        return commits / (time.perf_counter() - t0)
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def shown_dsn(dsn: str) -> str:
    """`dsn` with its password (if any) replaced by ***, for the report."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def probe_postgres(dsn: str, commits: int = 500) -> tuple[dict[str, Any] | None, str]:
    """The server's version and durable single-row commits per second from here, or None
    and why not (no psycopg, nothing answering, refused)."""
    try:
        import psycopg
    except ImportError:
        return None, "psycopg is not installed in this interpreter (pip install 'baton[postgres]')"
    table = f"baton_bench_probe_{os.getpid()}"  # a plain table: a temporary one is not logged
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
            conn.execute(f"CREATE TABLE {table} (x integer)")
            try:
                t0 = time.perf_counter()
                for i in range(commits):
                    conn.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
                rate = commits / (time.perf_counter() - t0)
            finally:
                conn.execute(f"DROP TABLE {table}")
    except psycopg.Error as exc:
        return None, " ".join(str(exc).split())[:300]
    return {
        "server_version": row[0] if row else "?",
        "synchronous_commit": sync[0] if sync else "?",
        "raw_commits_per_s": round(rate, 1),
    }, ""


def machine_info(peer_python: Path, workdir: Path, need_peer: bool = True) -> dict[str, Any]:
    try:
        peer: dict[str, str] | None = interpreter_info(peer_python)
    except (BenchmarkFailed, OSError, subprocess.TimeoutExpired):
        if need_peer:
            raise
        peer = None  # the parts run need no peer
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "baton_python": platform.python_version(),
        "baton_sqlite": sqlite3.sqlite_version,
        "peer": peer,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "raw_sqlite_commits_per_s": round(raw_sqlite_commits(workdir), 1),
    }


# -- the verdict ---------------------------------------------------------------------------


def ratio(num: float | None, den: float | None) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return num / den


def get(result: dict[str, Any] | None, *path: str) -> float | None:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return float(value)


def bars(summary: dict[str, dict[str, Any] | None], parts: set[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    if "sqlite" in parts:
        rows += sqlite_bars(summary)
    if "pg" in parts:
        rows += pg_bars(summary)
    if "waiting" in parts:
        rows += waiting_bars(summary)
    if "agents" in parts:
        rows += agents_bars(summary)
    if "control" in parts:
        rows += control_bars(summary)
    return rows


def control_bars(summary: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """Throughput against an absolute bar (the ratio is figure / bar); fan-out latency is
    information."""
    control = summary.get("control")
    rows: list[dict[str, Any]] = []
    for path, what, unit, bar in (
        ("runs", "control plane: run submissions over REST", "runs/s", CONTROL_RUNS_BAR),
        ("ingest", "control plane: batched event ingest", "events/s", CONTROL_INGEST_BAR),
    ):
        rate = get(control, path, "throughput")
        rows.append(
            {
                "bar": f"{what}, figure / bar",
                "baton": rate,
                "dbos": None,
                "unit": unit,
                "value": ratio(rate, bar),
                "ratio": True,
                "target": f">= {bar:,.0f} {unit}",
                "met": None if rate is None else rate >= bar,
            }
        )
    for q in ("p50", "p95", "p99"):
        latency = get(control, "fanout", f"{q}_ms")
        rows.append(
            {
                "bar": f"control plane: WebSocket fan-out latency ({q})",
                "baton": latency,
                "dbos": None,
                "unit": "ms",
                "value": latency,
                "ratio": False,
                "target": "(information)",
                "met": None,
            }
        )
    return rows


def agents_bars(summary: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    """p95 over the samples, measured from the agent's last word before it exits (the
    stricter clock: it includes the time for the exit to become observable)."""
    agents = summary.get("agents")
    rows: list[dict[str, Any]] = []
    for key, what, bar in (
        ("restart_latency_ms", "restart after a crash", AGENT_RESTART_BAR_MS),
        ("queued_start_latency_ms", "queued agent started once a slot frees", AGENT_QUEUED_BAR_MS),
    ):
        for flavour in ("thread", "process"):
            p95 = get(agents, key, flavour, "last_word_to_start", "p95")
            rows.append(
                {
                    "bar": f"agents: {what}, {flavour} (p95)",
                    "baton": p95,
                    "dbos": None,
                    "unit": "ms",
                    "value": p95,
                    "ratio": False,
                    "target": f"<= {bar:g} ms",
                    "met": None if p95 is None else p95 <= bar,
                }
            )
    for flavour, count in (("threads", "200 thread"), ("processes", "50 process")):
        value = get(agents, "start_stop", flavour, "ratio")
        rows.append(
            {
                "bar": f"agents: start and stop {count} agents, Baton / plain (time)",
                "baton": get(agents, "start_stop", flavour, "baton_s"),
                "dbos": None,
                "unit": "s",
                "value": value,
                "ratio": True,
                "target": "(information)",
                "met": None,
            }
        )
    return rows


def pg_bars(summary: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    d_tp = get(summary.get("dbos_pg"), "concurrent", "throughput")
    rows: list[dict[str, Any]] = []
    for key, label, workers in PG_MODES:
        b_tp = get(summary.get(key), "concurrent", "throughput")
        conc = ratio(b_tp, d_tp)
        informative = workers == 0  # the bar names 1-2 worker processes
        rows.append(
            {
                "bar": f"concurrent throughput on PostgreSQL, Baton ({label}) / DBOS",
                "baton": b_tp,
                "dbos": d_tp,
                "unit": "wf/s",
                "value": conc,
                "ratio": True,
                "target": "(information)" if informative else f">= {PG_CONCURRENT_BAR:g}x",
                "met": None if conc is None or informative else conc >= PG_CONCURRENT_BAR,
            }
        )
    b_p50 = get(summary.get("baton_pg_inproc"), "sequential", "p50_ms")
    d_p50 = get(summary.get("dbos_pg"), "sequential", "p50_ms")
    rows.append(
        {
            "bar": "sequential p50 on PostgreSQL, DBOS / Baton (in-process)",
            "baton": b_p50,
            "dbos": d_p50,
            "unit": "ms",
            "value": ratio(d_p50, b_p50),
            "ratio": True,
            "target": "(information)",
            "met": None,
        }
    )
    return rows


def sqlite_bars(summary: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    dbos, steps = summary.get("dbos"), summary.get("step_overhead")
    rows: list[dict[str, Any]] = []
    for key, flavour in (("baton_sync", "sync"), ("baton_async", "async")):
        baton = summary.get(key)
        b_tp, d_tp = get(baton, "concurrent", "throughput"), get(dbos, "concurrent", "throughput")
        conc = ratio(b_tp, d_tp)
        rows.append(
            {
                "bar": f"concurrent throughput, Baton ({flavour}) / DBOS",
                "baton": b_tp,
                "dbos": d_tp,
                "unit": "wf/s",
                "value": conc,
                "ratio": True,
                "target": f">= {CONCURRENT_BAR:g}x",
                "met": None if conc is None else conc >= CONCURRENT_BAR,
            }
        )
        b_p50, d_p50 = get(baton, "sequential", "p50_ms"), get(dbos, "sequential", "p50_ms")
        seq = ratio(d_p50, b_p50)
        rows.append(
            {
                "bar": f"sequential p50 latency, DBOS / Baton ({flavour})",
                "baton": b_p50,
                "dbos": d_p50,
                "unit": "ms",
                "value": seq,
                "ratio": True,
                "target": f">= {SEQUENTIAL_BAR:g}x",
                "met": None if seq is None else seq >= SEQUENTIAL_BAR,
            }
        )
    for flavour in ("sync", "async"):
        p95 = get(steps, flavour, "p95_ms")
        rows.append(
            {
                "bar": f"per-step overhead p95, Baton ({flavour})",
                "baton": p95,
                "dbos": None,
                "unit": "ms",
                "value": p95,
                "ratio": False,
                "target": f"< {STEP_P95_BAR_MS:g} ms",
                "met": None if p95 is None else p95 < STEP_P95_BAR_MS,
            }
        )
    return rows


def waiting_bars(summary: dict[str, dict[str, Any] | None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    waiting = summary.get("waiting")
    bar = None if waiting is None else waiting["bar"]
    rss = get(waiting, "waiting", "rss_mb")
    rows.append(
        {
            "bar": "RSS with every run waiting",
            "baton": rss,
            "dbos": None,
            "unit": "MB",
            "value": rss,
            "ratio": False,
            "target": f"<= {WAITING_RSS_BAR_MB:g} MB",
            "met": None if rss is None else rss <= WAITING_RSS_BAR_MB,
        }
    )
    extra = None if bar is None else bar["extra_threads"] + bar["extra_tasks"]
    rows.append(
        {
            "bar": "threads + loop tasks added while all wait",
            "baton": extra,
            "dbos": None,
            "unit": "",
            "value": extra,
            "ratio": False,
            "target": "not per run",
            "met": None if bar is None else bar["no_thread_or_task_per_run"],
        }
    )
    verified = get(waiting, "verify", "runs")
    rows.append(
        {
            "bar": "waiting runs woken, result verified",
            "baton": verified,
            "dbos": None,
            "unit": "",
            "value": verified,
            "ratio": False,
            "target": "all",
            "met": None if bar is None else bar["all_woke_correctly"],
        }
    )
    return rows


# -- the report ----------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ",.2f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(
    console: Console,
    args: argparse.Namespace,
    machine: dict[str, Any],
    summary: dict[str, dict[str, Any] | None],
    verdict: list[dict[str, Any]],
    parts: set[str],
) -> None:
    console.rule("[bold]Baton benchmarks")
    lines = [
        "[bold]Workload[/]: durable workflow of 3 trivial steps (i -> i+3), default "
        "durability; warm-up 20 + 20 not counted.",
        f"  sequential: {args.sequential} workflows one after another (p50/p95 per workflow)",
        f"  concurrent: {args.concurrent} workflows started at once, then every result awaited",
    ]
    if "sqlite" in parts:
        lines += [
            "  SQLite: a fresh file per system and run",
            f"  step overhead: {args.runs} runs x {args.steps} no-op steps, each call timed "
            "inside the workflow",
        ]
    if "pg" in parts:
        lines.append(
            f"  PostgreSQL ({shown_dsn(args.pg_dsn)}): DBOS in a fresh database, Baton in a "
            "fresh schema per run; Baton in-process (the caller's App executes), and with 1 "
            "and 2 worker processes (the caller only starts and awaits; workers launched "
            "before the clock); concurrent phase for all, sequential in-process and DBOS"
            if machine.get("postgres")
            else f"  PostgreSQL: skipped ({machine.get('postgres_skipped', 'not run')})"
        )
    medians = " (figures are medians over rounds)" if args.rounds > 1 else ""
    lines.append(f"  rounds: {args.rounds}{medians}")
    if "waiting" in parts:
        lines.append(
            f"  waiting at scale (once): {args.waiting_runs:,} runs of one trivial step then "
            "baton.sleep(3600) (half) or wait_for_approval (half), all waiting at once, then "
            "the clock jumped an hour and every approval decided"
        )
    if "control" in parts:
        lines.append(
            "  control plane (once, SQLite): uvicorn (uvloop, httptools) serving the API of an "
            "App with a 1-step workflow and its worker, in its own process; clients here on "
            "loopback: 3,000 POST /api/v1/runs with 64 in flight; 200 POST /api/v1/events "
            "of 500 events, 4 in flight; 100 WebSocket subscribers to type=bench.tick, 200 "
            "events published 4 at a time every 20 ms (latency: receive time - data.sent_at)"
        )
    console.print("\n".join(lines), highlight=False)
    peer = machine["peer"] or {"python": "-", "sqlite": "-"}
    pg = machine.get("postgres")
    console.print(
        f"[bold]Machine[/]: nproc {machine['nproc']} (cpu_count {machine['cpu_count']}), "
        f"{machine['platform']}\n"
        f"  Baton: Python {machine['baton_python']}, SQLite {machine['baton_sqlite']}; "
        f"peer: Python {peer['python']}, SQLite {peer['sqlite']}\n"
        f"  load average before {machine['loadavg_before']}, after {machine['loadavg_after']}\n"
        f"  raw sqlite3 (WAL, synchronous=FULL, 1 row per commit): "
        f"{machine['raw_sqlite_commits_per_s']:,.0f} commits/s"
        + (
            ""
            if pg is None
            else f"\n  PostgreSQL {pg['server_version']} (synchronous_commit="
            f"{pg['synchronous_commit']}), 1 row per commit from here: "
            f"{pg['raw_commits_per_s']:,.0f} commits/s"
        ),
        highlight=False,
    )

    if "sqlite" in parts:
        print_sqlite(console, summary)
    if "pg" in parts and pg is not None:
        print_pg(console, summary)
    if "waiting" in parts:
        print_waiting(console, summary.get("waiting"))
    if "control" in parts:
        print_control(console, summary.get("control"))

    table = Table(title="Bars (BENCHMARKS.md)", title_justify="left")
    for column in ("measure", "Baton", "DBOS", "ratio / value", "bar", "verdict"):
        table.add_column(column, justify="left" if column in ("measure", "verdict") else "right")
    for row in verdict:
        spec = ".4f" if row["unit"] == "ms" else ",.1f" if row["unit"] else ",.0f"
        unit = f" {row['unit']}" if row["unit"] else ""
        value = fmt(row["value"], ".1f") + "x" if row["ratio"] else fmt(row["value"], spec) + unit
        verdict_text = {True: "[green]met[/]", False: "[red]not met[/]", None: "[yellow]n/a[/]"}
        table.add_row(
            row["bar"],
            "-"
            if row["baton"] is None
            else fmt(row["baton"], ",.3f" if row["unit"] else ",.0f") + unit,
            "-" if row["dbos"] is None else fmt(row["dbos"], ",.3f") + f" {row['unit']}",
            "-" if row["value"] is None else value,
            row["target"],
            verdict_text[row["met"]] if "information" not in row["target"] else "-",
        )
    console.print(table)


def print_sqlite(console: Console, summary: dict[str, dict[str, Any] | None]) -> None:
    table = Table(title="Durable workflows on SQLite", title_justify="left")
    for column in ("system", "seq wf/s", "seq p50 ms", "seq p95 ms", "conc wf/s", "conc s"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for key in ("baton_sync", "baton_async", "dbos"):
        result = summary.get(key)
        if result is None:
            table.add_row(key, *["failed"] * 5)
            continue
        name = result["system"] + (f", {result['variant']}" if "variant" in result else "")
        seq, conc = result["sequential"], result["concurrent"]
        table.add_row(
            name,
            fmt(seq["throughput"]),
            fmt(seq["p50_ms"], ".3f"),
            fmt(seq["p95_ms"], ".3f"),
            fmt(conc["throughput"]),
            fmt(conc["seconds"], ".3f"),
        )
    console.print(table)

    steps = summary.get("step_overhead")
    table = Table(title="Per-step orchestration overhead (durable)", title_justify="left")
    for column in ("flavour", "step calls", "p50 ms", "p95 ms", "p99 ms", "mean ms", "max ms"):
        table.add_column(column, justify="left" if column == "flavour" else "right")
    for flavour in ("sync", "async"):
        row = None if steps is None else steps.get(flavour)
        if row is None:
            table.add_row(flavour, *["failed"] * 6)
            continue
        table.add_row(
            flavour,
            fmt(row["step_calls"], ",.0f"),
            *(fmt(row[k], ".4f") for k in ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "max_ms")),
        )
    console.print(table)


def print_pg(console: Console, summary: dict[str, dict[str, Any] | None]) -> None:
    table = Table(title="Durable workflows on PostgreSQL", title_justify="left")
    columns = ("system", "seq wf/s", "seq p50 ms", "seq p95 ms", "conc wf/s", "conc s")
    for column in (*columns, "starts s", "workers ready s"):
        table.add_column(column, justify="left" if column == "system" else "right")
    for key in (*(mode[0] for mode in PG_MODES), "dbos_pg"):
        result = summary.get(key)
        if result is None:
            table.add_row(key, *["failed"] * 7)
            continue
        name = result["system"] + (f", {result['variant']}" if "variant" in result else "")
        seq, conc = result.get("sequential") or {}, result["concurrent"]
        table.add_row(
            name,
            fmt(seq.get("throughput")),
            fmt(seq.get("p50_ms"), ".3f"),
            fmt(seq.get("p95_ms"), ".3f"),
            fmt(conc["throughput"]),
            fmt(conc["seconds"], ".3f"),
            fmt(conc.get("start_seconds"), ".3f"),
            fmt(result.get("workers_ready_s"), ".2f"),
        )
    console.print(table)


def print_control(console: Console, result: dict[str, Any] | None) -> None:
    table = Table(title="Control plane over loopback (SQLite, one run)", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if result is None:
        table.add_row("control plane", "failed")
        console.print(table)
        return
    runs, ingest, fan = result["runs"], result["ingest"], result["fanout"]
    rows = [
        (
            f"run submissions ({runs['requests']:,}, {runs['concurrency']} in flight)",
            f"{runs['throughput']:,.0f} runs/s in {runs['seconds']:.2f} s",
        ),
        (
            "  per request p50 / p95 / p99",
            f"{runs['p50_ms']:.1f} / {runs['p95_ms']:.1f} / {runs['p99_ms']:.1f} ms",
        ),
        ("  server CPU per run (incl. executing it)", f"{runs['server_cpu_ms_per_run']:.3f} ms"),
        (
            f"event ingest ({ingest['events']:,} in batches of {ingest['batch']}, "
            f"{ingest['concurrency']} in flight)",
            f"{ingest['throughput']:,.0f} events/s in {ingest['seconds']:.2f} s",
        ),
        (
            "  per batch p50 / p95",
            f"{ingest['p50_ms']:.1f} / {ingest['p95_ms']:.1f} ms",
        ),
        ("  server CPU per event", f"{ingest['server_cpu_us_per_event']:.1f} µs"),
        (
            f"WebSocket fan-out ({fan['subscribers']} subscribers x {fan['events']} events)",
            f"{fan['deliveries']:,} deliveries, {fan['out_of_order']} out of order",
        ),
        (
            "  latency p50 / p95 / p99 / max",
            f"{fan['p50_ms']:.1f} / {fan['p95_ms']:.1f} / {fan['p99_ms']:.1f} / "
            f"{fan['max_ms']:.1f} ms",
        ),
        (
            "  CPU per delivery, server / subscribers' process",
            f"{fan['server_cpu_us_per_delivery']:.1f} / "
            f"{fan.get('client_cpu_us_per_delivery', 0):.1f} µs",
        ),
    ]
    for measure, value in rows:
        table.add_row(measure, value)
    console.print(table)


def print_waiting(console: Console, result: dict[str, Any] | None) -> None:
    table = Table(title="Waiting at scale (one run)", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if result is None:
        table.add_row("waiting at scale", "failed")
        console.print(table)
        return
    start, waiting, base, after = (result[k] for k in ("start", "waiting", "baseline", "after"))
    sleepers, approvals = result["wake_sleepers"], result["wake_approvals"]
    verify = result["verify"]
    rows = [
        ("runs (sleep / approval)", f"{sleepers['runs']:,} / {approvals['runs']:,}"),
        ("start, one caller", f"{start['start_seconds']:,.1f} s ({start['start_rate']:,.0f}/s)"),
        ("first start to all WAITING", f"{start['all_waiting_seconds']:,.1f} s"),
        ("RSS, all waiting", f"{waiting['rss_mb']:,.1f} MB (before: {base['rss_mb']} MB)"),
        ("peak RSS until all waiting", f"{waiting['peak_rss_mb']:,.1f} MB"),
        ("threads, all waiting", f"{waiting['threads_os']} (before: {base['threads_os']})"),
        ("loop tasks, all waiting", f"{waiting['loop_tasks']} (before: {base['loop_tasks']})"),
        ("SQLite file, all waiting", f"{waiting['db_mb']:,.1f} MB"),
        ("sleepers: jump to all SUCCEEDED", f"{sleepers['seconds']:,.1f} s"),
        ("sleepers woken", f"{sleepers['rate']:,.0f} runs/s"),
        ("approvals: decisions, one caller", f"{approvals['decision_seconds']:,.1f} s"),
        ("decisions", f"{approvals['decisions_per_s']:,.0f}/s"),
        ("approvals: 1st decision to all SUCCEEDED", f"{approvals['seconds']:,.1f} s"),
        ("peak RSS, whole run", f"{after['peak_rss_mb']:,.1f} MB"),
        ("verified (wrong)", f"{verify['runs']:,} ({verify['wrong']:,})"),
    ]
    for measure, value in rows:
        table.add_row(measure, value)
    console.print(table)


# -- main ----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 120)
    workdir: Path = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    parts = set(PARTS) if args.only == "all" else {args.only}

    try:
        machine = machine_info(args.peer_python, workdir, bool(parts & {"sqlite", "pg"}))
    except (BenchmarkFailed, OSError, sqlite3.Error, subprocess.TimeoutExpired) as exc:
        console.print(f"[red]cannot benchmark: {exc}[/]")
        return 2
    if "pg" in parts:
        pg, why = probe_postgres(args.pg_dsn)
        if pg is None:
            machine["postgres_skipped"] = f"no PostgreSQL at {shown_dsn(args.pg_dsn)} ({why})"
            console.print(
                f"[bold yellow]skipped: {machine['postgres_skipped']}[/]", highlight=False
            )
        else:
            machine["postgres"] = pg
    run_pg = machine.get("postgres") is not None

    rounds: dict[str, list[dict[str, Any]]] = {}
    per_round = "sqlite" in parts or run_pg
    for round_no in range(args.rounds if per_round else 0):
        if args.rounds > 1:
            console.rule(f"round {round_no + 1} of {args.rounds}")
        jobs = build_jobs(args, workdir, round_no) if "sqlite" in parts else []
        jobs += build_pg_jobs(args, workdir, round_no) if run_pg else []
        for job in jobs:
            try:
                rounds.setdefault(job.key, []).append(run_json(job, console))
            except BenchmarkFailed as exc:
                console.print(f"[red]FAILED: {exc}[/]")
                failures.append(str(exc))
    if "waiting" in parts:
        try:
            rounds["waiting"] = [run_json(waiting_job(args, workdir), console)]
        except BenchmarkFailed as exc:
            console.print(f"[red]FAILED: {exc}[/]")
            failures.append(str(exc))
    if "agents" in parts:
        try:
            rounds["agents"] = [run_json(agents_job(), console)]
        except BenchmarkFailed as exc:
            console.print(f"[red]FAILED: {exc}[/]")
            failures.append(str(exc))
    if "control" in parts:
        try:
            rounds["control"] = [run_json(control_job(workdir), console)]
        except BenchmarkFailed as exc:
            console.print(f"[red]FAILED: {exc}[/]")
            failures.append(str(exc))
    machine["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]

    keys = ["baton_sync", "baton_async", "dbos", "step_overhead", "waiting", "dbos_pg", "agents"]
    keys.append("control")
    keys += [mode[0] for mode in PG_MODES]
    summary: dict[str, dict[str, Any] | None] = {
        key: median_merge(rounds[key]) if rounds.get(key) else None for key in keys
    }
    verdict = bars(summary, parts)  # a skipped part's bars show as n/a
    print_report(console, args, machine, summary, verdict, parts)

    output = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "parts": sorted(parts),
        "workload": {
            "sequential": args.sequential,
            "concurrent": args.concurrent,
            "step_overhead_steps": args.steps,
            "step_overhead_runs": args.runs,
            "rounds": args.rounds,
            "waiting_runs": args.waiting_runs,
            "pg_dsn": shown_dsn(args.pg_dsn),
        },
        "machine": machine,
        "summary": summary,
        "rounds": rounds,
        "bars": verdict,
        "failures": failures,
    }
    # a partial run (--only) leaves the last full run's results.json alone
    name = "results.json" if args.only == "all" else f"results-{args.only}.json"
    results_path = workdir / name
    results_path.write_text(json.dumps(output, indent=2) + "\n")
    console.print(f"full results: {results_path}", highlight=False)
    if failures:
        console.print(f"[red]{len(failures)} benchmark(s) could not run[/]")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
