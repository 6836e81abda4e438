"""What must hold on a store (read with plain sqlite3) and on the side-effect log after crashes.

Each check returns a list of problems (empty when all is well) so one failing test shows
everything that went wrong at once, not only the first thing.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

STEP_NAMES = {1: "first", 2: "second", 3: "third"}
UNFINISHED = ("ENQUEUED", "RUNNING", "WAITING", "COMPENSATING")

StepKey = tuple[str, int]  # (run_id, seq)


def expected_output(job: int) -> dict:
    """What `three(job)` / `three_async(job)` in child.py return."""
    return {"job": job, "value": (job + 1) * 2 + 3}


@contextmanager
def connect(store: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the store, closed on exit."""
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        yield db
    finally:
        db.close()


def read_effects(log: Path) -> list[tuple[int, str, int]]:
    """The side-effect log: one (pid, run_id, seq) per step execution, in execution order."""
    if not log.exists():
        return []
    effects = []
    for line in log.read_text().splitlines():
        pid, run_id, seq = line.split()
        effects.append((int(pid), run_id, int(seq)))
    return effects


def executions(log: Path) -> dict[StepKey, list[int]]:
    """For each step, the pids that executed it, in order."""
    by_step: dict[StepKey, list[int]] = defaultdict(list)
    for pid, run_id, seq in read_effects(log):
        by_step[(run_id, seq)].append(pid)
    return dict(by_step)


def writer_pid(written_by: str) -> int:
    """The pid in a worker id `host:pid:hex`."""
    _host, pid, _token = written_by.rsplit(":", 2)
    return int(pid)


def run_ids(store: Path) -> dict[int, str]:
    """job number -> run id, from the idempotency keys."""
    with connect(store) as db:
        rows = db.execute("SELECT idempotency_key, run_id FROM runs").fetchall()
    return {int(key.removeprefix("job-")): run_id for key, run_id in rows}


def checkpoints(store: Path) -> dict[StepKey, tuple[str, str, int]]:
    """(run_id, seq) -> (status, written_by, attempts) of every step row."""
    with connect(store) as db:
        rows = db.execute("SELECT run_id, seq, status, written_by, attempts FROM steps")
        return {(r, s): (status, by, attempts) for r, s, status, by, attempts in rows}


def unfinished_runs(store: Path) -> list[tuple]:
    marks = ", ".join("?" for _ in UNFINISHED)
    with connect(store) as db:
        return db.execute(
            f"SELECT idempotency_key, run_id, status, owner, fence, attempt FROM runs "
            f"WHERE status IN ({marks}) ORDER BY idempotency_key",
            UNFINISHED,
        ).fetchall()


# -- the checks ------------------------------------------------------------------------------
def check_runs(db: sqlite3.Connection, jobs: Iterable[int]) -> list[str]:
    """Every job has exactly one run (its idempotency key), SUCCEEDED with the right output."""
    problems = []
    rows = db.execute("SELECT idempotency_key, run_id, status, output FROM runs").fetchall()
    by_key: dict[str | None, list[tuple]] = defaultdict(list)
    for key, run_id, status, output in rows:
        by_key[key].append((run_id, status, output))
    wanted = {f"job-{j}": j for j in jobs}
    for key in sorted(set(by_key) - set(wanted), key=str):
        problems.append(f"run(s) {by_key[key]} with unexpected idempotency key {key!r}")
    for key, job in sorted(wanted.items(), key=lambda kv: kv[1]):
        found = by_key.get(key, [])
        if len(found) != 1:
            problems.append(f"{key}: {len(found)} runs, expected exactly 1 (lost run?)")
            continue
        run_id, status, output = found[0]
        if status != "SUCCEEDED":
            problems.append(f"{key} ({run_id}): status {status}, expected SUCCEEDED")
        elif json.loads(output) != expected_output(job):
            problems.append(f"{key} ({run_id}): output {output}, expected {expected_output(job)}")
    return problems


def check_events(db: sqlite3.Connection) -> list[str]:
    """Exactly one run.succeeded per run, one step.completed per (run, seq), and no failure."""
    problems = []
    runs = [r for (r,) in db.execute("SELECT run_id FROM runs")]
    succeeded = dict(
        db.execute(
            "SELECT run_id, COUNT(*) FROM events WHERE type = 'baton.run.succeeded' GROUP BY run_id"
        ).fetchall()
    )
    for run_id in runs:
        if succeeded.get(run_id, 0) != 1:
            problems.append(f"{run_id}: {succeeded.get(run_id, 0)} baton.run.succeeded events")
    completed = {
        (run_id, seq): n
        for run_id, seq, n in db.execute(
            "SELECT run_id, json_extract(data, '$.seq'), COUNT(*) FROM events "
            "WHERE type = 'baton.step.completed' GROUP BY run_id, json_extract(data, '$.seq')"
        )
    }
    expected = {(run_id, seq) for run_id in runs for seq in STEP_NAMES}
    for key in sorted(expected | set(completed)):
        n = completed.get(key, 0)
        if key not in expected:
            problems.append(f"step {key}: {n} baton.step.completed events for no known step")
        elif n != 1:
            problems.append(f"step {key}: {n} baton.step.completed events, expected 1")
    bad = db.execute(
        "SELECT type, run_id, data FROM events WHERE type IN "
        "('baton.run.failed', 'baton.run.dead', 'baton.step.failed', 'baton.step.retrying')"
    ).fetchall()
    problems += [f"unexpected failure event {row}" for row in bad]
    return problems


def check_step_rows(db: sqlite3.Connection) -> list[str]:
    """Every run has exactly three step rows (seq 1, 2, 3), all SUCCEEDED, with their names."""
    problems = []
    rows: dict[str, dict[int, tuple[str, str]]] = {
        r: {} for (r,) in db.execute("SELECT run_id FROM runs")
    }
    for run_id, seq, name, status in db.execute("SELECT run_id, seq, name, status FROM steps"):
        rows.setdefault(run_id, {})[seq] = (name, status)
    for run_id, steps in rows.items():
        if sorted(steps) != sorted(STEP_NAMES):
            problems.append(f"{run_id}: step rows for seq {sorted(steps)}, expected [1, 2, 3]")
        for seq, (name, status) in sorted(steps.items()):
            if (name, status) != (STEP_NAMES.get(seq), "SUCCEEDED"):
                problems.append(f"step ({run_id}, {seq}): {name} {status}")
    return problems


def check_effects(db: sqlite3.Connection, log: Path, pids: Sequence[int]) -> list[str]:
    """No step whose checkpoint was durable runs again.

    Children run one after another, so their start order is the order of `pids`. For every
    checkpoint, the process that wrote it must have executed the step, and no process started
    after the writer may have executed it again: the latest executor is the writer. A process
    never executes the same step twice, and nothing executes a step that has no checkpoint.
    """
    problems = []
    order = {pid: k for k, pid in enumerate(pids)}
    if len(order) != len(pids):
        return [f"a pid was reused among the children {pids}; cannot order the executions"]
    ran = executions(log)
    for (run_id, seq), executors in sorted(ran.items()):
        strangers = sorted(set(executors) - set(order))
        if strangers:
            problems.append(f"step ({run_id}, {seq}) executed by unknown pids {strangers}")
        twice = sorted({p for p in executors if executors.count(p) > 1})
        if twice:
            problems.append(f"step ({run_id}, {seq}) executed more than once by pid(s) {twice}")
    rows = db.execute("SELECT run_id, seq, written_by FROM steps WHERE status = 'SUCCEEDED'")
    recorded = set()
    for run_id, seq, written_by in rows:
        recorded.add((run_id, seq))
        writer = writer_pid(written_by)
        executors = ran.get((run_id, seq), [])
        if writer not in executors:
            problems.append(
                f"step ({run_id}, {seq}) checkpointed by pid {writer}, which never executed it "
                f"(executors {executors})"
            )
            continue
        last = max(executors, key=lambda p: order.get(p, -1))
        if order.get(last, -1) != order.get(writer):
            problems.append(
                f"step ({run_id}, {seq}) executed again after its checkpoint: written by pid "
                f"{writer} (child #{order.get(writer)}), executed later by pid {last} "
                f"(child #{order.get(last)}); executors in order: {executors}"
            )
    for key in sorted(set(ran) - recorded):
        problems.append(f"step {key} executed by {ran[key]} but has no SUCCEEDED checkpoint")
    return problems


def check_no_workers(db: sqlite3.Connection) -> list[str]:
    rows = db.execute("SELECT worker_id FROM workers").fetchall()
    return [f"worker row {w} left behind after a clean shutdown" for (w,) in rows]


def recovered_problems(store: Path, log: Path, jobs: Iterable[int], pids: Sequence[int]) -> list:
    """Everything that must hold once a fresh process recovered and finished every run."""
    jobs = list(jobs)
    with connect(store) as db:
        return [
            *check_runs(db, jobs),
            *check_events(db),
            *check_step_rows(db),
            *check_effects(db, log, pids),
            *check_no_workers(db),
        ]


def assert_recovered(
    store: Path, log: Path, jobs: Iterable[int], pids: Sequence[int], context: str = ""
) -> None:
    problems = recovered_problems(store, log, jobs, pids)
    assert not problems, report(problems, context)


def report(problems: Sequence[str], context: str = "", limit: int = 40) -> str:
    head = f"{len(problems)} problem(s)" + (f" [{context}]" if context else "")
    shown = [f"  - {p}" for p in problems[:limit]]
    if len(problems) > limit:
        shown.append(f"  ... and {len(problems) - limit} more")
    return "\n".join([head, *shown])


def stopped_problems(store: Path, log: Path, pid: int) -> list[str]:
    """After a graceful `app.shutdown()` by `pid`: every step it started is checkpointed (none
    half-recorded), and every run it did not finish is handed back to the queue, unowned."""
    problems = []
    ran = executions(log)
    with connect(store) as db:
        steps = db.execute("SELECT run_id, seq, status, written_by FROM steps").fetchall()
        for run_id, seq, status, written_by in steps:
            if status != "SUCCEEDED" or writer_pid(written_by) != pid:
                problems.append(f"step ({run_id}, {seq}): {status} written by {written_by}")
            if ran.get((run_id, seq)) != [pid]:
                problems.append(f"step ({run_id}, {seq}) executions {ran.get((run_id, seq))}")
        recorded = {(run_id, seq) for run_id, seq, _, _ in steps}
        for key in sorted(set(ran) - recorded):
            problems.append(f"step {key} executed by {ran[key]} but not checkpointed (half-done)")
        completed = db.execute(
            "SELECT run_id, json_extract(data, '$.seq'), COUNT(*) FROM events "
            "WHERE type = 'baton.step.completed' GROUP BY run_id, json_extract(data, '$.seq')"
        ).fetchall()
        events = {(run_id, seq): n for run_id, seq, n in completed}
        if events != dict.fromkeys(recorded, 1):
            problems.append(f"step.completed events {events} do not match step rows {recorded}")
        runs = db.execute("SELECT run_id, status, owner FROM runs").fetchall()
        suspended = {
            r for (r,) in db.execute("SELECT run_id FROM events WHERE type = 'baton.run.suspended'")
        }
        for run_id, status, owner in runs:
            if status == "SUCCEEDED":
                continue
            if status != "ENQUEUED" or owner is not None:
                problems.append(f"run {run_id} left {status} owned by {owner} after shutdown")
            elif run_id not in suspended:
                problems.append(f"run {run_id} handed back without a baton.run.suspended event")
        problems += check_no_workers(db)
    return problems
