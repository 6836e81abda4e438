"""Crash recovery with real SIGKILLs: worker processes die inside a step, between two steps,
and at random moments; a fresh process must then finish every run, exactly once per
checkpoint, without running again any step whose checkpoint was durable.

Each child is a separate `python child.py` process (see child.py); they run one after
another on one store file, and every step execution is logged to a side-effect file.
Set BATON_CRASH_SEED to replay the random test with another seed.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from .harness import Bench, jobs_arg
from .verify import (
    assert_recovered,
    checkpoints,
    executions,
    report,
    run_ids,
    stopped_problems,
    unfinished_runs,
    writer_pid,
)

pytestmark = pytest.mark.crash

JOBS = list(range(20))
TARGET = 7  # the job whose process dies in tests (a) and (b)


@pytest.fixture
def bench(tmp_path: Path) -> Bench:
    return Bench(tmp_path)


def writer(bench: Bench, run_id: str, seq: int) -> int:
    return writer_pid(checkpoints(bench.store)[(run_id, seq)][1])


@pytest.mark.timeout(180)
@pytest.mark.parametrize("variant", ["sync", "async"])
def test_sigkill_inside_a_step(bench: Bench, variant: str) -> None:
    submit = ("submit", "--jobs", jobs_arg(JOBS), "--variant", variant)
    crashed = bench.run(*submit, "--kill-in-step2", str(TARGET))
    assert crashed.killed, f"child exited with {crashed.code}:\n{bench.stderr_tail()}"
    run_id = run_ids(bench.store)[TARGET]
    # the process died in step 2: step 1 is checkpointed, step 2 is not, the run is still owned
    assert sorted(s for r, s in checkpoints(bench.store) if r == run_id) == [1]
    (stuck,) = [r for r in unfinished_runs(bench.store) if r[1] == run_id]
    assert stuck[2] == "RUNNING"

    again = bench.run(*submit)  # the client resubmits: same keys, so the same runs
    assert again.code == 0, bench.stderr_tail()
    for job, first_run in crashed.started().items():
        assert again.started()[job] == first_run, f"job-{job} got a second run"
    assert_recovered(bench.store, bench.log, JOBS, bench.pids, f"variant={variant}")

    first, second = crashed.pid, again.pid
    ran = executions(bench.log)
    assert ran[(run_id, 1)] == [first] and writer(bench, run_id, 1) == first
    assert ran[(run_id, 2)] == [first, second] and writer(bench, run_id, 2) == second
    assert ran[(run_id, 3)] == [second] and writer(bench, run_id, 3) == second


@pytest.mark.timeout(180)
@pytest.mark.parametrize("variant", ["sync", "async"])
def test_sigkill_between_two_steps(bench: Bench, variant: str) -> None:
    submit = ("submit", "--jobs", jobs_arg(JOBS), "--variant", variant)
    crashed = bench.run(*submit, "--kill-after-step1", str(TARGET))
    assert crashed.killed, f"child exited with {crashed.code}:\n{bench.stderr_tail()}"
    run_id = run_ids(bench.store)[TARGET]
    # step 1 returned, so its checkpoint is committed; step 2 was never called
    assert sorted(s for r, s in checkpoints(bench.store) if r == run_id) == [1]
    assert (run_id, 2) not in executions(bench.log)

    again = bench.run(*submit)
    assert again.code == 0, bench.stderr_tail()
    assert_recovered(bench.store, bench.log, JOBS, bench.pids, f"variant={variant}")

    first, second = crashed.pid, again.pid
    ran = executions(bench.log)
    assert ran[(run_id, 1)] == [first] and writer(bench, run_id, 1) == first
    assert ran[(run_id, 2)] == [second] and writer(bench, run_id, 2) == second
    assert ran[(run_id, 3)] == [second] and writer(bench, run_id, 3) == second


ITERATIONS = 200


@pytest.mark.timeout(600)
def test_sigkill_at_random_moments(bench: Bench) -> None:
    """Kill a worker 0-150 ms after it is ready, 200 times on one store: each child submits
    two new jobs and resubmits an older one, and recovers what the killed ones left. Then a
    fresh process recovers everything, and a last one resubmits every job, as a client whose
    calls were cut off would."""
    seed = int(os.environ.get("BATON_CRASH_SEED", "20240611"))
    rng = random.Random(seed)
    context = f"seed={seed}"
    print(f"BATON_CRASH_SEED={seed}")  # shown with the captured output if the test fails
    acked: dict[int, str] = {}  # job -> run id, for every start() that returned
    killed = 0
    t0 = time.monotonic()
    for k in range(ITERATIONS):
        batch = [2 * k, 2 * k + 1]
        if k:
            batch.append(rng.randrange(2 * k))  # resubmit an older job
        delay = rng.uniform(0, 0.010) if rng.random() < 0.3 else rng.uniform(0, 0.150)
        done = bench.kill_after_ready(
            delay, "submit", "--jobs", jobs_arg(batch), "--variant", "mixed", "--step-ms", "20"
        )
        assert done.killed or done.code == 0, (
            f"{context} iteration {k}: child exited with {done.code}:\n{bench.stderr_tail()}"
        )
        killed += done.killed
        for job, run_id in done.started().items():
            assert acked.setdefault(job, run_id) == run_id, (
                f"{context} iteration {k}: job-{job} resubmitted as run {run_id}, "
                f"but it was acknowledged before as run {acked[job]}"
            )
    kill_time = time.monotonic() - t0

    bench.recover()
    ids = run_ids(bench.store)
    lost = {job: run_id for job, run_id in acked.items() if ids.get(job) != run_id}
    assert not lost, f"{context}: acknowledged runs missing from the store: {lost}"
    unfinished = unfinished_runs(bench.store)
    assert not unfinished, f"{context}: runs unfinished after recovery: {unfinished[:10]}"

    all_jobs = range(2 * ITERATIONS)
    final = bench.run("submit", "--jobs", jobs_arg(all_jobs), "--variant", "mixed")
    assert final.code == 0, bench.stderr_tail()
    for job, run_id in final.started().items():
        assert acked.get(job, run_id) == run_id, f"{context}: job-{job} got a second run"
    assert_recovered(bench.store, bench.log, all_jobs, bench.pids, context)

    # the test is only worth something if the kills landed while work was going on
    ran = executions(bench.log)
    repeated = sum(len(set(pids)) > 1 for pids in ran.values())
    stats = (
        f"{context}: {killed}/{ITERATIONS} children killed in {kill_time:.1f}s, "
        f"{len(acked)} runs acknowledged before a kill or exit, "
        f"{repeated} step executions cut off and run again"
    )
    print(stats)
    assert killed >= ITERATIONS // 2, stats
    assert repeated > 0, stats


@pytest.mark.timeout(180)
def test_graceful_shutdown_mid_batch(bench: Bench) -> None:
    jobs = list(range(30))
    stopped = bench.run(
        "submit",
        "--jobs",
        jobs_arg(jobs),
        "--variant",
        "mixed",
        "--step-ms",
        "10",
        "--shutdown-after",
        "20",
    )
    assert stopped.code == 0, bench.stderr_tail()
    problems = stopped_problems(bench.store, bench.log, stopped.pid)
    assert not problems, report(problems, "after app.shutdown()")
    assert unfinished_runs(bench.store), "the shutdown should have come mid-batch"

    bench.recover()
    assert_recovered(bench.store, bench.log, jobs, bench.pids)
    twice = {key: pids for key, pids in executions(bench.log).items() if len(pids) != 1}
    assert not twice, f"steps executed more than once despite a graceful shutdown: {twice}"
