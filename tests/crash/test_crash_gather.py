"""SIGKILL during a gather: after a restart every run finishes with the right result, each
child run exists once, and no gather element runs again once its checkpoint was written.

Workers are `python fanout.py` processes (see fanout.py), run one after another on one store
file; every step execution is logged to a side-effect file before the step goes on.
Set BATON_CRASH_SEED to replay the random test with another seed.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from .fanout import expected_output
from .harness import Bench, jobs_arg
from .verify import check_no_workers, connect, executions, report, writer_pid

pytestmark = pytest.mark.crash

FANOUT = Path(__file__).resolve().parent / "fanout.py"
TARGET = 3  # the job whose worker dies in the deterministic test


class FanoutBench(Bench):
    """A Bench whose children are fanout.py workers."""

    def spawn(self, mode: str, *options: str) -> subprocess.Popen[str]:
        with self.stderr_path.open("a") as stderr:
            proc = subprocess.Popen(
                [sys.executable, str(FANOUT), str(self.store), str(self.log), mode, *options],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        self.pids.append(proc.pid)
        return proc


@pytest.fixture
def bench(tmp_path: Path) -> FanoutBench:
    return FanoutBench(tmp_path)


def top_runs(store: Path) -> dict[int, str]:
    """job -> run id of the submitted runs (their idempotency keys are `job-<i>`)."""
    with connect(store) as db:
        rows = db.execute(
            "SELECT idempotency_key, run_id FROM runs WHERE idempotency_key LIKE 'job-%'"
        ).fetchall()
    return {int(key.removeprefix("job-")): run_id for key, run_id in rows}


def problems_after_recovery(bench: Bench, jobs: list[int]) -> list[str]:
    problems: list[str] = []
    with connect(bench.store) as db:
        runs = db.execute(
            "SELECT run_id, idempotency_key, parent_run_id, status, output FROM runs"
        ).fetchall()
        steps = db.execute("SELECT run_id, seq, kind, status, written_by FROM steps").fetchall()
        completed = db.execute(
            "SELECT run_id, json_extract(data, '$.seq'), COUNT(*) FROM events "
            "WHERE type = 'baton.step.completed' GROUP BY run_id, json_extract(data, '$.seq')"
        ).fetchall()
        succeeded = dict(
            db.execute(
                "SELECT run_id, COUNT(*) FROM events WHERE type = 'baton.run.succeeded' "
                "GROUP BY run_id"
            ).fetchall()
        )
        problems += check_no_workers(db)
    by_key = {key: (run_id, status, output) for run_id, key, _, status, output in runs}
    parents = {}
    for job in jobs:
        found = by_key.get(f"job-{job}")
        if found is None:
            problems.append(f"job-{job}: no run")
            continue
        run_id, status, output = found
        parents[run_id] = job
        if status != "SUCCEEDED" or json.loads(output) != expected_output(job):
            problems.append(f"job-{job} ({run_id}): {status} {output}")
    children = defaultdict(list)
    for run_id, key, parent, status, output in runs:
        if parent is None:
            continue
        children[parent].append(run_id)
        if key != f"{parent}:5":
            problems.append(f"child {run_id} of {parent} has idempotency key {key}")
        if status != "SUCCEEDED" or json.loads(output) != parents.get(parent, -1) + 1000:
            problems.append(f"child {run_id} of {parent}: {status} {output}")
    for parent in parents:
        if len(children[parent]) != 1:
            problems.append(f"run {parent} has {len(children[parent])} child runs, expected 1")
    for run_id, *_ in runs:
        if succeeded.get(run_id, 0) != 1:
            problems.append(f"{run_id}: {succeeded.get(run_id, 0)} baton.run.succeeded events")
    # checkpoints: every step ran in the process that recorded it, and never after that
    order = {pid: k for k, pid in enumerate(bench.pids)}
    ran = executions(bench.log)
    recorded = set()
    for run_id, seq, kind, status, written_by in steps:
        if kind != "step":
            continue
        if status != "SUCCEEDED":
            problems.append(f"step ({run_id}, {seq}) left {status}")
            continue
        recorded.add((run_id, seq))
        writer = writer_pid(written_by)
        executors = ran.get((run_id, seq), [])
        if writer not in executors:
            problems.append(f"step ({run_id}, {seq}) written by {writer}, run by {executors}")
        elif max(order.get(p, -1) for p in executors) != order[writer]:
            problems.append(
                f"step ({run_id}, {seq}) ran again after its checkpoint: written by {writer}, "
                f"executors in order {executors}"
            )
        if len(set(executors)) != len(executors):
            problems.append(f"step ({run_id}, {seq}) ran twice in one process: {executors}")
    for key in sorted(set(ran) - recorded):
        problems.append(f"step {key} ran ({ran[key]}) but has no SUCCEEDED checkpoint")
    events = {(run_id, seq): n for run_id, seq, n in completed}
    if events != dict.fromkeys(recorded, 1):
        extra = {k: v for k, v in events.items() if v != 1 or k not in recorded}
        problems.append(f"step.completed events do not match the checkpoints: {extra}")
    return problems


@pytest.mark.timeout(240)
@pytest.mark.parametrize("variant", ["sync", "async"])
def test_sigkill_during_a_gather(bench: FanoutBench, variant: str) -> None:
    jobs = list(range(8))
    submit = ("submit", "--jobs", jobs_arg(jobs), "--variant", variant)
    crashed = bench.run(*submit, "--kill-in-gather", str(TARGET))
    assert crashed.killed, f"worker exited with {crashed.code}:\n{bench.stderr_tail()}"
    run_id = top_runs(bench.store)[TARGET]
    with connect(bench.store) as db:
        status = db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone()[0]
        done = {
            seq
            for (seq,) in db.execute(
                "SELECT seq FROM steps WHERE run_id = ? AND status = 'SUCCEEDED'", (run_id,)
            )
        }
    # killed inside the gather: parts 0 and 1 recorded, parts 2 and 3 cut off
    assert status == "RUNNING" and {1, 2} <= done and not {3, 4} & done

    again = bench.run(*submit)  # the client resubmits: same keys, so the same runs
    assert again.code == 0, bench.stderr_tail()
    for job, acked in crashed.started().items():
        assert again.started()[job] == acked, f"job-{job} got a second run"
    problems = problems_after_recovery(bench, jobs)
    assert not problems, report(problems, f"variant={variant}")
    first, second = bench.pids
    ran = executions(bench.log)
    assert ran[(run_id, 1)] == [first] and ran[(run_id, 2)] == [first]
    assert ran[(run_id, 3)] == [first, second] and ran[(run_id, 4)] == [first, second]


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_during_gathers(bench: FanoutBench) -> None:
    seed = int(os.environ.get("BATON_CRASH_SEED", "20240712"))
    rng = random.Random(seed)
    print(f"BATON_CRASH_SEED={seed}")
    iterations = 24
    killed = 0
    for k in range(iterations):
        batch = [2 * k, 2 * k + 1] + ([rng.randrange(2 * k)] if k else [])
        done = bench.kill_after_ready(
            rng.uniform(0.0, 0.4), "submit", "--jobs", jobs_arg(batch), "--step-ms", "60"
        )
        assert done.killed or done.code == 0, f"iteration {k}: {done.code}\n{bench.stderr_tail()}"
        killed += done.killed
    bench.recover()
    jobs = sorted(top_runs(bench.store))
    problems = problems_after_recovery(bench, jobs)
    assert not problems, report(problems, f"seed={seed}")
    ran = executions(bench.log)
    repeated = sum(len(set(pids)) > 1 for pids in ran.values())
    stats = f"seed={seed}: {killed}/{iterations} workers killed, {repeated} steps run again"
    print(stats)
    assert killed >= iterations // 2 and repeated > 0, stats
