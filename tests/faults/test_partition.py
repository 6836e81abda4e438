"""One worker reaches PostgreSQL through a TCP proxy that stops forwarding without closing
anything (a network partition as both ends see it), and later forwards again: once at a
random moment, once just after the worker wrote a checkpoint inside a transaction it has not
committed yet (so the server holds that transaction open, with its row locks). The other
worker takes the cut one's runs over after the worker ttl and finishes them; once the line
heals, whatever the cut worker had in flight is refused by the fence, and it goes on working.

Set BATON_CRASH_SEED to replay with another seed (it picks the moments of the cuts).
"""

from __future__ import annotations

import os
import random
import time
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .harness import (
    Db,
    Proxy,
    Worker,
    plan,
    read_effects,
    stderr_tail,
    submitter,
    via,
    wait_for_runs,
    wait_until,
    with_params,
)
from .verify import problems, report, source_pid, writer_pid

pytestmark = pytest.mark.crash

CUTS = ("at random", "inside a transaction")
JOBS_PER_CUT = 60
LATE_JOBS = 10  # started once the other worker is gone: only the healed worker runs them
TTL = 1.5
OPTIONS = ("--concurrency", "8", "--heartbeat", "0.2", "--ttl", str(TTL), "--poll", "0.1")
STEPS = plan((50, 250), (50, 250), (50, 250))


def all_succeeded(db: Db, run_ids: list[str]) -> bool:
    rows = db.rows(
        "SELECT COUNT(*) FROM runs WHERE run_id = ANY(%s) AND status = 'SUCCEEDED'", (run_ids,)
    )
    return rows[0][0] == len(run_ids)


@pytest.mark.timeout(180)
def test_connection_cut_by_proxy(pg_url: str, tmp_path: Path, workers: list[Worker]) -> None:
    seed = int(os.environ.get("BATON_CRASH_SEED", "20240917"))
    rng = random.Random(seed)
    context = f"BATON_CRASH_SEED={seed}"
    print(context)
    t0 = time.monotonic()
    server = urlsplit(pg_url)
    proxy = Proxy((server.hostname or "127.0.0.1", server.port or 5432))
    # what a deployment sets so that libpq gives up on a dead line; through a loopback proxy
    # the proxy's kernel acknowledges everything, so here only connect_timeout bites
    cut_url = with_params(
        via(pg_url, proxy.port),
        connect_timeout=2,
        keepalives=1,
        keepalives_idle=1,
        keepalives_interval=1,
        keepalives_count=2,
        tcp_user_timeout=3000,
    )
    db = Db(pg_url)
    app = submitter(pg_url)
    cut_worker = Worker(cut_url, tmp_path, *OPTIONS)  # the first worker: it leads
    workers.append(cut_worker)
    other = Worker(pg_url, tmp_path, *OPTIONS)
    workers.append(other)
    cut_id = cut_worker.ready()
    other.ready()
    held: dict[str, int] = {}  # run -> fence, of the runs the cut worker held at each cut
    before: set[tuple[str, int]] = set()  # its checkpoints in the store at each cut
    cut_for: list[float] = []
    open_at_cut: list[int] = []  # the cut worker's transactions open on the server
    try:
        jobs = 0
        for how in CUTS:
            for job in range(jobs, jobs + JOBS_PER_CUT):
                app.start("three", job, STEPS, idempotency_key=f"job-{job}")
            jobs += JOBS_PER_CUT

            def holding() -> list[tuple]:
                return db.rows(
                    "SELECT run_id, fence FROM runs WHERE status = 'RUNNING' AND owner = %s",
                    (cut_id,),
                )

            wait_until(holding, 30, "the worker behind the proxy to hold runs")
            if how == "at random":
                time.sleep(rng.uniform(0.0, 0.4))
                proxy.cut()
            else:
                # step 2's name goes to the server only as a parameter of its checkpoint (the
                # statement is prepared by then: no SQL text), which locks the run row
                proxy.cut_after(b"second")
                wait_until(proxy.is_cut, 30, "a checkpoint to go through the proxy")
            cut_at = time.monotonic()
            time.sleep(1.0)  # what the server had whole when the line went is committed now
            now_held = dict(holding())
            open_at_cut.append(
                db.rows(
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE client_port = ANY(%s) "
                    "AND state = 'idle in transaction'",
                    (proxy.server_side_ports(),),
                )[0][0]
            )
            if how == "inside a transaction":
                assert open_at_cut[-1] >= 1, "the cut left no transaction open on the server"
            held.update(now_held)
            before |= {
                (run_id, seq)
                for run_id, seq in db.rows(
                    "SELECT run_id, seq FROM steps WHERE written_by = %s", (cut_id,)
                )
            }

            wait_until(
                partial(all_succeeded, db, list(now_held)),
                40,
                f"the other worker to finish the {len(now_held)} cut runs",
            )
            cut_for.append(time.monotonic() - cut_at)
            proxy.heal()
            wait_until(
                lambda: db.rows("SELECT 1 FROM workers WHERE worker_id = %s", (cut_id,)),
                30,
                "the healed worker to register again",
            )
            wait_for_runs(db, workers, tmp_path, 60)

        # the healed worker works on: alone now, it runs the last runs from start to end
        assert other.stop() == 0, stderr_tail(tmp_path)
        for job in range(jobs, jobs + LATE_JOBS):
            app.start("three", job, STEPS, idempotency_key=f"job-{job}")
        jobs += LATE_JOBS
        wait_for_runs(db, workers, tmp_path, 60, "the late runs to end")
        assert cut_worker.alive(), f"the cut worker died:\n{stderr_tail(tmp_path)}"
        code = cut_worker.stop()
        assert code == 0, f"the cut worker exited {code}:\n{stderr_tail(tmp_path)}"
    finally:
        app.shutdown(timeout=5)
        proxy.close()

    effects = read_effects(tmp_path)
    found, facts = problems(db, range(jobs), effects, {cut_worker.pid})
    # none of the cut worker's writes about the runs it held landed after a cut
    for (run_id, seq), written_by in sorted(facts.writers.items()):
        if run_id in held and written_by == cut_id and (run_id, seq) not in before:
            found.append(f"step ({run_id}, {seq}) of a cut run checkpointed by the cut worker")
    landed_before = {(r, str(s)) for r, s in before}
    for _, _, run_id, what, fence, *_ in effects.of("wrote", cut_worker.pid):
        if run_id in held and int(fence) <= held[run_id] and (run_id, what) not in landed_before:
            found.append(f"the cut worker's write {what} of {run_id} was confirmed after a cut")
    for run_id, source in db.rows(
        "SELECT run_id, source FROM events WHERE type = 'baton.run.succeeded'"
    ):
        if run_id in held and source_pid(source) == cut_worker.pid:
            found.append(f"cut run {run_id} completed by the cut worker")
    late = [facts.run_ids[j] for j in range(jobs - LATE_JOBS, jobs) if j in facts.run_ids]
    for run_id in late:
        writers = {writer_pid(facts.writers.get((run_id, s), "x:0:0")) for s in (1, 2, 3)}
        if writers != {cut_worker.pid}:
            found.append(f"late run {run_id} checkpointed by {writers}, not the healed worker")
    fenced = effects.of("fenced", cut_worker.pid)
    errors = effects.of("error", cut_worker.pid)
    db.close()
    stats = (
        f"{context}: cuts {CUTS} lasted {[f'{c:.1f}s' for c in cut_for]} (ttl {TTL}s) with "
        f"{open_at_cut} transactions left open, "
        f"{len(held)} runs taken from the cut worker, {len(facts.reexecuted)} step executions "
        f"run again, {len(fenced)} of its writes refused by the fence and {len(errors)} failed "
        f"with the connection, {proxy.connections} connections through the proxy; "
        f"{jobs} runs in {time.monotonic() - t0:.1f}s"
    )
    print(stats)
    assert not found, report(found, stats)
    assert held, stats
