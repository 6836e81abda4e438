"""A worker frozen with SIGSTOP (a long GC pause, a stopped VM) past the worker ttl: another
worker takes its runs over; when the frozen one goes on (SIGCONT) and finishes the step it
was in, while the new owner is still in that step, every checkpoint it writes is refused by
the fence; the new owner finishes the runs, and the thawed worker carries on as a worker.

The first worker leads, so its freeze also tests that a frozen leader loses the lead (the
leader is the one that recovers runs of dead workers)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from .harness import (
    Db,
    Worker,
    plan,
    read_effects,
    stderr_tail,
    submitter,
    wait_for_runs,
    wait_until,
)
from .verify import problems, report, source_pid, writer_pid

pytestmark = pytest.mark.crash

JOBS = 4
TTL = 1.5
OPTIONS = ("--concurrency", str(JOBS), "--heartbeat", "0.2", "--ttl", str(TTL), "--poll", "0.1")
# step 2 waits for its process's gate, which the test opens: first for the thawed worker,
# once the other has taken the runs over, then for the other
STEPS = plan((10, 30), (10, 30, 1), (10, 30))


@pytest.mark.timeout(120)
def test_sigstop_zombie_is_fenced(pg_url: str, tmp_path: Path, workers: list[Worker]) -> None:
    t0 = time.monotonic()
    frozen = Worker(pg_url, tmp_path, *OPTIONS)  # the first worker: it leads
    workers.append(frozen)
    frozen_id = frozen.ready()
    db = Db(pg_url)
    app = submitter(pg_url)
    try:
        run_ids = [app.start("three", j, STEPS, idempotency_key=f"job-{j}").id for j in range(JOBS)]

        def in_step2() -> bool:
            execs = read_effects(tmp_path).of("exec", frozen.pid)
            return {ln[2] for ln in execs if ln[3] == "2"} == set(run_ids)

        wait_until(in_step2, 30, "the first worker to execute step 2 of every run")
        other = Worker(pg_url, tmp_path, *OPTIONS)  # nothing to claim: the runs are taken
        workers.append(other)
        other_id = other.ready()
        owners = dict(db.rows("SELECT run_id, owner FROM runs"))
        assert set(owners.values()) == {frozen_id}, owners

        frozen.freeze()
        frozen_at = time.monotonic()

        def taken_over() -> bool:
            rows = db.rows("SELECT owner, fence FROM runs WHERE status = 'RUNNING'")
            return len(rows) == JOBS and all(o == other_id and f == 2 for o, f in rows)

        wait_until(taken_over, 30, "the other worker to take every run over")
        takeover = time.monotonic() - frozen_at
        assert not db.rows("SELECT 1 FROM workers WHERE worker_id = %s", (frozen_id,)), (
            "the frozen worker is still registered after its runs were taken over"
        )
        wait_until(
            lambda: (
                {ln[2] for ln in read_effects(tmp_path).of("exec", other.pid) if ln[3] == "2"}
                == set(run_ids)
            ),
            30,
            "the other worker to execute step 2 of every run",
        )
        frozen.thaw()
        frozen.open_gate()  # its step 2 ends now, while the other worker is in step 2

        def refused() -> bool:
            lines = read_effects(tmp_path).of("fenced", frozen.pid)
            return {ln[2] for ln in lines} == set(run_ids)

        wait_until(refused, 30, "the thawed worker's checkpoints to be refused")
        assert not db.rows("SELECT 1 FROM steps WHERE seq > 1"), "a step 2 went through"
        other.open_gate()
        wait_until(
            lambda: db.rows("SELECT 1 FROM workers WHERE worker_id = %s", (frozen_id,)),
            10,
            "the thawed worker to register again",
        )
        wait_for_runs(db, workers, tmp_path, 30)
        assert frozen.alive(), f"the thawed worker died:\n{stderr_tail(tmp_path)}"
        for worker in (frozen, other):
            code = worker.stop()
            assert code == 0, f"worker {worker.pid} exited {code}:\n{stderr_tail(tmp_path)}"
    finally:
        app.shutdown(timeout=5)

    effects = read_effects(tmp_path)
    found, facts = problems(db, range(JOBS), effects, {frozen.pid})
    for run_id in run_ids:
        writers = [writer_pid(facts.writers[(run_id, seq)]) for seq in (1, 2, 3)]
        if writers != [frozen.pid, other.pid, other.pid]:
            found.append(f"run {run_id}: checkpoints by {writers}")
        if effects.execs.get((run_id, 2)) != [frozen.pid, other.pid]:
            found.append(f"run {run_id}: step 2 executed by {effects.execs.get((run_id, 2))}")
        if facts.claims.get(run_id) != [frozen_id, other_id]:
            found.append(f"run {run_id}: claimed by {facts.claims.get(run_id)}")
    # what the frozen worker got into the store: its claims' step 1, nothing after
    landed = sorted((ln[2], ln[3]) for ln in effects.of("wrote", frozen.pid))
    if landed != sorted((r, "1") for r in run_ids):
        found.append(f"the frozen worker's confirmed writes: {landed}")
    fenced = sorted((ln[2], ln[3], ln[4]) for ln in effects.of("fenced", frozen.pid))
    if fenced != sorted((r, "2", "1") for r in run_ids):
        found.append(f"the frozen worker's refused writes: {fenced}")
    from_frozen = sorted(
        (type_, run_id, seq)
        for type_, run_id, source, seq in db.rows(
            "SELECT type, run_id, source, (data::jsonb)->>'seq' FROM events"
        )
        if source_pid(source) == frozen.pid
    )
    expected = sorted(
        [("baton.run.started", r, None) for r in run_ids]
        + [("baton.step.completed", r, "1") for r in run_ids]
    )
    if from_frozen != expected:
        found.append(f"events from the frozen worker: {from_frozen}")
    db.close()
    stats = (
        f"frozen for {takeover:.1f}s until the takeover (ttl {TTL}s); "
        f"{len(fenced)} late checkpoints refused; {time.monotonic() - t0:.1f}s in all"
    )
    print(stats)
    assert not found, report(found, stats)
