"""SIGKILL while runs sleep or wait for a signal: after recovery every run finishes with the
right result, and no step runs again once its checkpoint was written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.crash

SLEEPER = Path(__file__).resolve().parent / "sleeper.py"
JOBS = 30


def _spawn(root: Path, mode: str, *options: str) -> subprocess.Popen[str]:
    stderr = (root / "stderr.log").open("a")
    return subprocess.Popen(
        [sys.executable, str(SLEEPER), str(root / "b.db"), str(root / "log"), mode, *options],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def _statuses(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())
    except sqlite3.OperationalError:  # the first process is still creating the schema
        return {}
    finally:
        conn.close()


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def children():
    """Every child process a test spawns, killed at the end whatever happened."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigkill_while_runs_sleep_and_wait_for_signals(tmp_path: Path, children) -> None:
    db = tmp_path / "b.db"
    # 1. start the runs, kill the worker once every run is asleep (seq 2)
    first = _spawn(tmp_path, "submit", "--jobs", str(JOBS), "--sleep", "1.5")
    children.append(first)
    _wait_for(lambda: db.exists() and list(_statuses(db).values()).count("WAITING") == JOBS)
    _kill(first)

    # 2. a new worker wakes them; kill it once some wait for the signal (seq 4)
    second = _spawn(tmp_path, "recover")
    children.append(second)
    _wait_for(lambda: _signal_waits(db) >= JOBS // 3)
    _kill(second)

    # 3. send every run its signal (straight into the store is not allowed: use an App)
    import baton

    app = baton.App(db, worker=False)
    for run_id in _statuses(db):
        app.signal(run_id, "go", 7)
    app.shutdown()

    # 4. a last worker finishes everything
    last = _spawn(tmp_path, "recover")
    children.append(last)
    last.communicate(timeout=120)
    assert last.returncode == 0, (tmp_path / "stderr.log").read_text()[-3000:]

    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT run_id, idempotency_key, status, output FROM runs").fetchall()
    assert len(rows) == JOBS
    for run_id, key, status, output in rows:
        assert status == "SUCCEEDED", (run_id, status)
        assert int(output) == int(key.split("-")[1]) * 10 + 7
    # no step ran again after its checkpoint: executions by a process that started after
    # the one that wrote the checkpoint are forbidden
    order = [first.pid, second.pid, last.pid]
    writers = {
        (run_id, seq): int(written_by.split(":")[1])
        for run_id, seq, written_by in conn.execute(
            "SELECT run_id, seq, written_by FROM steps WHERE kind = 'step'"
        )
    }
    runs_by_step: dict[tuple[str, int], list[int]] = defaultdict(list)
    for line in (tmp_path / "log").read_text().splitlines():
        pid, run_id, seq = line.split()
        runs_by_step[(run_id, int(seq))].append(int(pid))
    assert set(runs_by_step) == set(writers)
    for key, pids in runs_by_step.items():
        writer = order.index(writers[key])
        late = [p for p in pids if order.index(p) > writer]
        assert not late, f"{key} ran again after its checkpoint (writer {writers[key]}): {pids}"
    # the sleeps were recorded once each, and every signal consumed once
    assert conn.execute("SELECT COUNT(*) FROM steps WHERE kind='sleep'").fetchone()[0] == JOBS
    consumed = conn.execute("SELECT COUNT(*) FROM signals WHERE consumed_seq = 4").fetchone()[0]
    assert consumed == JOBS


def _signal_waits(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT COUNT(*) FROM steps WHERE kind='signal' AND status='WAITING'"
        ).fetchone()[0]
    finally:
        conn.close()
