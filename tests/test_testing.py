"""`baton.testing.WorkflowEnvironment`: months of virtual time in a test that takes moments."""

from __future__ import annotations

from pathlib import Path

import pytest

import baton
from baton.testing import WorkflowEnvironment

DAY = 24 * 3600


def environment(store_path: Path | str) -> WorkflowEnvironment:
    """On SQLite, the environment's own throw-away file; on PostgreSQL, the test's schema."""
    if isinstance(store_path, Path):
        return WorkflowEnvironment()
    return WorkflowEnvironment(store_path)


def test_a_month_of_sleep_retries_and_an_approval_timeout(store_path):
    attempts = []
    with environment(store_path) as env:
        app = env.app

        @app.step(
            retry=baton.Retry(max_attempts=4, initial=3600, backoff=2, max_delay=DAY, jitter=False)
        )
        def flaky() -> str:
            attempts.append(env.elapsed)
            if len(attempts) < 3:
                raise ConnectionError("not yet")
            return "ok"

        @app.workflow()
        def monthly() -> dict:
            baton.sleep(30 * DAY)
            got = flaky()
            decision = baton.wait_for_approval("boss", timeout=DAY)
            return {"step": got, "approved": decision.approved, "timed_out": decision.timed_out}

        assert env.run(monthly) == {"step": "ok", "approved": False, "timed_out": True}
        # 30 days, back-offs of 1 h and 2 h, then the one-day approval timeout
        assert attempts == [30 * DAY, 30 * DAY + 3600, 30 * DAY + 3 * 3600]
        assert env.elapsed == 31 * DAY + 3 * 3600


def test_a_signal_without_a_timer_is_reported_not_waited_for_forever(store_path):
    with environment(store_path) as env:

        @env.app.workflow()
        def needs_signal() -> str:
            return baton.wait_for_signal("go")

        handle = env.app.start(needs_signal)
        with pytest.raises(baton.ResultTimeout):
            env.result(handle, timeout=2)
        env.app.signal(handle.id, "go", "went")
        assert env.result(handle) == "went"


def test_env_sleep_runs_what_falls_due_in_order(store_path):
    with environment(store_path) as env:
        log: list[tuple[str, float]] = []

        @env.app.step()
        def note(what: str) -> None:
            log.append((what, env.elapsed))

        @env.app.workflow()
        def ticker(name: str, every: float, times: int) -> None:
            for _ in range(times):
                baton.sleep(every)
                note(name)

        env.app.start(ticker, "hourly", 3600, 3)
        env.app.start(ticker, "half-hourly", 1800, 2)
        env.sleep(2 * 3600)
        # two runs due at the same instant (3600) may go in either order
        assert sorted(log, key=lambda e: (e[1], e[0])) == [
            ("half-hourly", 1800),
            ("half-hourly", 3600),
            ("hourly", 3600),
            ("hourly", 7200),
        ]
        assert [t for _, t in log] == sorted(t for _, t in log)  # never out of time order
        assert env.elapsed == 2 * 3600


def test_a_daily_schedule_fires_once_per_day(store_path):
    with environment(store_path) as env:
        app = env.app
        fired: list[float] = []

        @app.step()
        def record() -> None:
            fired.append(env.elapsed)

        @app.workflow()
        def daily_report() -> None:
            record()

        app.schedule("report", daily_report, cron="0 6 * * *", timezone="UTC")
        app.launch()
        env.sleep(3 * DAY)
        assert fired == [6 * 3600, DAY + 6 * 3600, 2 * DAY + 6 * 3600]
