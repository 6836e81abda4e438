"""PostgreSQL itself restarts (immediate stop: every connection dies, no checkpoint) twice
while worker processes execute runs and a client keeps starting new ones.

The contract for the client: `start()` returning means the run is stored; `start()` raising
means the outcome is unknown, and the client retries with the same idempotency key. Every
acknowledged start must end SUCCEEDED, completed once, each checkpoint written once, and the
workers must find the server again on their own.
"""

from __future__ import annotations

import random
import socket
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.core.errors import StoreError
from pgserver import ThrowawayPostgres, fresh_schema_url

from .harness import (
    Db,
    Worker,
    dump_stacks,
    plan,
    read_effects,
    stderr_tail,
    submitter,
    wait_for_runs,
)
from .verify import problems, report

pytestmark = pytest.mark.crash

RATE = 60.0  # starts per second, about what the two workers can take
SUBMIT_FOR = 20.0
# (seconds after the first start, seconds down): a short outage that the store's retries
# bridge, and one longer than they last, so that writes fail and runs are handed back
RESTARTS = ((3.0, 0.5), (7.0, 8.0))
OPTIONS = ("--concurrency", "8", "--heartbeat", "0.2", "--ttl", "30", "--poll", "0.1")
STEPS = plan((20, 80), (20, 80), (20, 80))


def quiet_port() -> int:
    """A free port below the ephemeral range. The server is down for seconds: on a port of
    that range, an outgoing connection (any process's, or a client's own attempt to reach the
    server, connecting to itself) may take the port meanwhile, and the restart fail."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    for port in random.sample(range(20000, min(ephemeral, 30000)), 100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


@pytest.fixture
def own_server() -> Iterator[ThrowawayPostgres]:
    """A PostgreSQL server of this test's own, to restart, on a quiet port."""
    try:
        server = ThrowawayPostgres()
    except RuntimeError as exc:  # no initdb / pg_ctl here
        pytest.skip(str(exc))
    try:
        server.stop()
        server.port = quiet_port()
        server.dsn = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
        server.start()
        yield server
    finally:
        server.close()


@pytest.mark.timeout(240)
def test_postgres_restart_under_load(
    own_server: ThrowawayPostgres, tmp_path: Path, workers: list[Worker]
) -> None:
    server = own_server
    t0 = time.monotonic()
    url = fresh_schema_url(server.dsn)
    db = Db(url)
    app = submitter(url)
    for _ in range(2):
        workers.append(Worker(url, tmp_path, *OPTIONS))
    for worker in workers:
        worker.ready()

    acked: dict[int, str] = {}
    raised: Counter[str] = Counter()  # exception type -> starts that raised it
    retried: set[int] = set()
    failures: list[BaseException] = []
    begin = time.monotonic()

    def submit() -> None:
        job = 0
        try:
            while time.monotonic() - begin < SUBMIT_FOR:
                deadline = time.monotonic() + 60
                while True:  # the same key until one start is acknowledged
                    try:
                        handle = app.start("three", job, STEPS, idempotency_key=f"job-{job}")
                    except Exception as exc:
                        raised[f"{type(exc).__module__}.{type(exc).__name__}"] += 1
                        retried.add(job)
                        if not isinstance(exc, StoreError) or time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
                        continue
                    acked[job] = handle.id
                    break
                job += 1
                pause = begin + job / RATE - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    feeder = threading.Thread(target=submit, name="submitter")
    feeder.start()
    outages = []
    try:
        for at, down_for in RESTARTS:
            time.sleep(max(0.0, begin + at - time.monotonic()))
            unfinished = db.unfinished()
            t = time.monotonic()
            server.restart(down_for=down_for)
            outages.append((round(time.monotonic() - t, 1), unfinished))
        feeder.join(timeout=SUBMIT_FOR + 90)
        assert not feeder.is_alive(), "the submitter is stuck"
        if failures:
            trace = "".join(traceback.format_exception(failures[0]))
            raise AssertionError(
                f"start() failed for good ({dict(raised)}):\n{trace}\n"
                f"{dump_stacks(workers, tmp_path)}"
            )
        wait_for_runs(db, workers, tmp_path, 90)
        for worker in workers:
            assert worker.alive(), f"worker {worker.pid} died:\n{stderr_tail(tmp_path)}"
            code = worker.stop()
            assert code == 0, f"worker {worker.pid} exited {code}:\n{stderr_tail(tmp_path)}"
    finally:
        app.shutdown(timeout=5)

    effects = read_effects(tmp_path)
    jobs = range(len(acked))
    found, facts = problems(db, jobs, effects, None)  # a lost commit may run a step again
    lost = {job: run_id for job, run_id in acked.items() if facts.run_ids.get(job) != run_id}
    if lost:
        found.append(f"acknowledged runs not in the store (or under another id): {lost}")
    errors = effects.of("error")
    db.close()
    stats = (
        f"{len(outages)} restarts (seconds down, runs unfinished): {outages}; "
        f"{len(acked)} runs acknowledged, {sum(raised.values())} starts raised "
        f"{dict(raised)} for {len(retried)} jobs and were retried; {len(errors)} worker "
        f"writes failed with the connection, {len(facts.reexecuted)} steps executed again; "
        f"{time.monotonic() - t0:.1f}s in all"
    )
    print(stats)
    assert not found, report(found, stats)
