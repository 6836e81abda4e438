"""Three worker processes on one PostgreSQL schema; one after another is SIGKILLed at a random
moment while work is in flight and a replacement is started. Every run must end SUCCEEDED
with its result, completed once, every checkpoint written once, and a step may run again
only where the worker executing it was killed.

Set BATON_CRASH_SEED to replay with another seed (it picks the moments and the victims).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from .harness import Db, Worker, plan, read_effects, stderr_tail, submitter, wait_for_runs
from .verify import moved_runs, problems, report

pytestmark = pytest.mark.crash

JOBS = 1000
KILLS = 10  # aimed at; at least MIN_KILLS must land on a worker holding runs
MIN_KILLS = 6  # under a loaded CI machine a few aimed kills find no run held
BURSTS = 16  # runs are started in bursts, so that work piles up in the workers now and then
GAP = 1.0  # seconds between two bursts, at least; a burst also waits (up to MAX_GAP) for the
MAX_GAP = 4.0  # kills to keep pace, so that a slow machine does not run out of work to kill
# a killed worker is found gone by its pid at the leader's next sweep (every heartbeat); the
# ttl is long so that no live worker is ever taken for dead on a loaded machine
OPTIONS = ("--concurrency", "8", "--heartbeat", "0.2", "--ttl", "10", "--poll", "0.1")
STEPS = plan((1, 5), (1, 5), (1, 5))


@pytest.mark.timeout(240)
def test_three_workers_sigkill(pg_url: str, tmp_path: Path, workers: list[Worker]) -> None:
    seed = int(os.environ.get("BATON_CRASH_SEED", "20240917"))
    rng = random.Random(seed)
    context = f"BATON_CRASH_SEED={seed}"
    print(context)
    t0 = time.monotonic()

    def spawn() -> Worker:
        worker = Worker(pg_url, tmp_path, *OPTIONS)
        workers.append(worker)
        return worker

    live = [spawn() for _ in range(3)]
    for worker in live:
        worker.ready()
    db = Db(pg_url)
    app = submitter(pg_url)
    acked: dict[int, str] = {}
    failures: list[BaseException] = []

    killed: list[Worker] = []

    def submit() -> None:
        try:
            for burst in range(BURSTS):
                last = time.monotonic()
                for job in range(burst * JOBS // BURSTS, (burst + 1) * JOBS // BURSTS):
                    handle = app.start("three", job, STEPS, idempotency_key=f"job-{job}")
                    acked[job] = handle.id
                time.sleep(GAP)
                while len(killed) * BURSTS < (burst + 1) * KILLS:
                    if time.monotonic() - last > MAX_GAP:
                        break
                    time.sleep(0.02)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    feeder = threading.Thread(target=submit, name="submitter")
    feeder.start()
    held_at_kill: list[int] = []
    try:
        wait = rng.uniform(0.05, 0.6)
        while len(killed) < KILLS and (feeder.is_alive() or db.unfinished()):
            time.sleep(wait)
            holding = dict(
                db.rows(
                    "SELECT owner, COUNT(*) FROM runs WHERE status = 'RUNNING' "
                    "AND owner IS NOT NULL GROUP BY owner"
                )
            )
            victims = [w for w in live if holding.get(w.worker_id)]
            if not victims:  # between two bursts: look again soon
                wait = rng.uniform(0.0, 0.05)
                continue
            wait = rng.uniform(0.05, 0.6)
            victim = rng.choice(victims)
            victim.kill()
            killed.append(victim)
            held_at_kill.append(holding[victim.worker_id])
            live.remove(victim)
            replacement = spawn()
            replacement.ready()
            live.append(replacement)
        kill_phase = time.monotonic() - t0
        feeder.join(timeout=60)
        assert not feeder.is_alive(), "the submitter is stuck"
        assert not failures, f"start() failed: {failures[0]!r}"
        wait_for_runs(db, workers, tmp_path, 90)
        for worker in live:
            code = worker.stop()
            assert code == 0, f"worker {worker.pid} exited {code}:\n{stderr_tail(tmp_path)}"
    finally:
        app.shutdown(timeout=5)

    effects = read_effects(tmp_path)
    cut = {w.pid for w in killed}
    found, facts = problems(db, range(JOBS), effects, cut)
    moved, wrong_moves = moved_runs(facts, {w.worker_id for w in killed if w.worker_id})
    found += wrong_moves
    lost = {job: run_id for job, run_id in acked.items() if facts.run_ids.get(job) != run_id}
    if lost:
        found.append(f"acknowledged runs not in the store: {lost}")
    db.close()
    stats = (
        f"{context}: {len(killed)} workers killed holding {sum(held_at_kill)} runs "
        f"({held_at_kill}) in {kill_phase:.1f}s; {facts.recovered} runs recovered, "
        f"{moved} runs claimed again, {len(facts.reexecuted)} step executions cut off and "
        f"run again; {len(acked)} runs in {time.monotonic() - t0:.1f}s"
    )
    print(stats)
    assert not found, report(found, stats)
    assert len(killed) >= MIN_KILLS, stats
    assert moved > 0 and facts.recovered > 0, stats
