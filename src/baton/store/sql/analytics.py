"""Reads for analytics: the runs that ended in a time window, and their steps."""

from __future__ import annotations

from baton.store.sql.text import Conn


class AnalyticsOps:
    def _read(self) -> Conn: ...

    def finished_runs(
        self, since: float, until: float, workflow: str | None = None, limit: int = 200_000
    ) -> list[tuple]:
        """(workflow, status, created_at, started_at, finished_at) of runs that ended in
        [since, until), newest first, at most `limit`."""
        where, params = _window(since, until, workflow)
        return (
            self._read()
            .execute(
                "SELECT workflow, status, created_at, started_at, finished_at FROM runs "
                f"WHERE {where} ORDER BY finished_at DESC LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )

    def finished_steps(
        self, since: float, until: float, workflow: str | None = None, limit: int = 500_000
    ) -> list[tuple]:
        """(workflow, step name, kind, status, attempts, started_at, finished_at) of the steps
        of runs that ended in [since, until)."""
        where, params = _window(since, until, workflow, "r.")
        return (
            self._read()
            .execute(
                "SELECT r.workflow, s.name, s.kind, s.status, s.attempts, s.started_at, "
                "s.finished_at FROM runs r JOIN steps s ON s.run_id = r.run_id "
                f"WHERE {where} LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )


def _window(since: float, until: float, workflow: str | None, prefix: str = "") -> tuple[str, list]:
    where = (
        f"{prefix}finished_at IS NOT NULL AND {prefix}finished_at >= ? AND {prefix}finished_at < ?"
    )
    params: list = [since, until]
    if workflow is not None:
        where += f" AND {prefix}workflow = ?"
        params.append(workflow)
    return where, params
