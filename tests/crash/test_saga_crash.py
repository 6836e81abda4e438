"""Sagas under real SIGKILLs: a worker dies in the middle of a compensation (and, in the random
test, anywhere else); a fresh process must finish every run COMPENSATED, never running again a
compensation whose checkpoint was written, and undoing every run's steps newest first.

The children run saga_child.py one after another on one store file; every step and
compensation execution is logged to a side-effect file. BATON_CRASH_SEED replays the random test.
"""

from __future__ import annotations

import json
import os
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest

from .harness import Bench, jobs_arg
from .verify import (
    check_effects,
    check_no_workers,
    checkpoints,
    connect,
    executions,
    read_effects,
    report,
    run_ids,
    unfinished_runs,
    writer_pid,
)

pytestmark = pytest.mark.crash

CHILD = Path(__file__).resolve().parent / "saga_child.py"
JOBS = list(range(10))
TARGET = 4  # the job whose process dies in the middle of undoing step 2
SEQS = [1, 2, 3, -3, -2, -1]  # every run's checkpoints: three steps, then their compensations


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path, child=CHILD)


def saga_problems(store: Path, log: Path, jobs: Iterable[int], pids: Sequence[int]) -> list[str]:
    """Everything that must hold once every run of `jobs` has been compensated."""
    problems = []
    with connect(store) as db:
        runs = db.execute("SELECT idempotency_key, run_id, status, error FROM runs").fetchall()
        by_key = {key: (run_id, status, error) for key, run_id, status, error in runs}
        if len(by_key) != len(runs) or set(by_key) != {f"job-{j}" for j in jobs}:
            problems.append(f"runs {sorted(by_key)} do not match jobs {sorted(jobs)}")
        for key, (run_id, status, error) in sorted(by_key.items()):
            job = int(key.removeprefix("job-"))
            if status != "COMPENSATED":
                problems.append(f"{key} ({run_id}): status {status}, expected COMPENSATED")
            elif json.loads(error)["message"] != f"trip {job} cannot go ahead":
                problems.append(f"{key} ({run_id}): error {error}, expected the original one")
        rows: dict[str, dict[int, tuple[str, str]]] = defaultdict(dict)
        for run_id, seq, kind, status in db.execute("SELECT run_id, seq, kind, status FROM steps"):
            rows[run_id][seq] = (kind, status)
        for _key, (run_id, _, _) in sorted(by_key.items()):
            expected = {s: ("step" if s > 0 else "compensation", "SUCCEEDED") for s in SEQS}
            if rows[run_id] != expected:
                problems.append(f"run {run_id}: checkpoints {rows[run_id]}, expected {expected}")
        problems += _event_problems(db, [run_id for run_id, _, _ in by_key.values()])
        problems += check_effects(db, log, pids)
        problems += check_no_workers(db)
    problems += _order_problems(log)
    return problems


def _event_problems(db, run_ids: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """One compensating and one compensated event per run, one completion per checkpoint."""
    problems = []
    counts = defaultdict(int)
    for type, run_id, seq in db.execute(
        "SELECT type, run_id, json_extract(data, '$.seq') FROM events WHERE type IN "
        "('baton.run.compensating', 'baton.run.compensated', 'baton.step.completed', "
        "'baton.compensation.completed')"
    ):
        counts[(type, run_id, seq if "completed" in type else None)] += 1
    for run_id in run_ids:
        wanted = [("baton.run.compensating", None), ("baton.run.compensated", None)]
        wanted += [("baton.step.completed", s) for s in SEQS if s > 0]
        wanted += [("baton.compensation.completed", s) for s in SEQS if s < 0]
        for type, seq in wanted:
            n = counts.pop((type, run_id, seq), 0)
            if n != 1:
                problems.append(f"run {run_id}: {n} {type} events for seq {seq}, expected 1")
    problems += [f"unexpected events {key} x{n}" for key, n in counts.items()]
    bad = db.execute(
        "SELECT type, run_id FROM events WHERE type IN ('baton.run.failed', 'baton.run.dead', "
        "'baton.compensation.failed', 'baton.compensation.retrying', 'baton.step.retrying')"
    ).fetchall()
    problems += [f"unexpected failure event {row}" for row in bad]
    return problems


def _order_problems(log: Path) -> list[str]:
    """Per run, the first executions come in order: steps 1, 2, 3, then their undoing 3, 2, 1."""
    first: dict[str, list[int]] = defaultdict(list)
    for _pid, run_id, seq in read_effects(log):
        if seq not in first[run_id]:
            first[run_id].append(seq)
    return [
        f"run {run_id}: first executions in the order {order}, expected {SEQS}"
        for run_id, order in first.items()
        if order != SEQS
    ]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("variant", ["sync", "async"])
def test_sigkill_inside_a_compensation(bench: Bench, variant: str) -> None:
    submit = ("submit", "--jobs", jobs_arg(JOBS), "--variant", variant)
    crashed = bench.run(*submit, "--kill-in-undo", str(TARGET))
    assert crashed.killed, f"child exited with {crashed.code}:\n{bench.stderr_tail()}"
    run_id = run_ids(bench.store)[TARGET]
    # it died undoing step 2: step 3 is undone and checkpointed, step 2 is not, still owned
    marks = sorted(s for r, s in checkpoints(bench.store) if r == run_id)
    assert marks == [-3, 1, 2, 3], marks
    (stuck,) = [r for r in unfinished_runs(bench.store) if r[1] == run_id]
    assert stuck[2] == "COMPENSATING" and stuck[3] is not None

    bench.recover()
    problems = saga_problems(bench.store, bench.log, JOBS, bench.pids)
    assert not problems, report(problems, f"variant={variant}")

    first, second = crashed.pid, bench.pids[-1]
    ran = executions(bench.log)
    for seq in (1, 2, 3):
        assert ran[(run_id, seq)] == [first]
    assert ran[(run_id, -3)] == [first]  # its checkpoint was written: not run again
    assert ran[(run_id, -2)] == [first, second]  # cut off by the kill: run again
    assert ran[(run_id, -1)] == [second]
    written = checkpoints(bench.store)
    assert writer_pid(written[(run_id, -3)][1]) == first
    assert writer_pid(written[(run_id, -2)][1]) == second


ITERATIONS = 20


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments_during_sagas(bench: Bench) -> None:
    """Kill workers 0-400 ms after they are ready, while they run steps and compensations
    (each compensation takes ~60 ms); then a fresh process finishes everything."""
    seed = int(os.environ.get("BATON_CRASH_SEED", "20240612"))
    rng = random.Random(seed)
    context = f"seed={seed}"
    print(f"BATON_CRASH_SEED={seed}")
    killed = 0
    for k in range(ITERATIONS):
        done = bench.kill_after_ready(
            rng.uniform(0, 0.4),
            "submit",
            "--jobs",
            jobs_arg([2 * k, 2 * k + 1]),
            "--variant",
            "mixed",
            "--undo-ms",
            "60",
        )
        assert done.killed or done.code == 0, (
            f"{context} iteration {k}: child exited with {done.code}:\n{bench.stderr_tail()}"
        )
        killed += done.killed
    bench.recover()
    started = set(run_ids(bench.store))
    problems = saga_problems(bench.store, bench.log, started, bench.pids)
    assert not problems, report(problems, context)

    ran = executions(bench.log)
    undone_twice = sum(len(pids) > 1 for (_, seq), pids in ran.items() if seq < 0)
    stats = (
        f"{context}: {killed}/{ITERATIONS} children killed, {len(started)} runs, "
        f"{undone_twice} compensations cut off and run again"
    )
    print(stats)
    assert killed >= ITERATIONS // 2, stats
    assert undone_twice > 0, stats  # the kills must also have landed inside compensations
