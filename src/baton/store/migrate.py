"""Moving a whole store to another backend: `baton store migrate --from … --to …`.

Every table is copied (runs in any state with their checkpoints, signals, approvals, queues,
schedules, payloads and the event log, ids and sequence numbers kept) in ONE transaction on
the target: it ends with everything or nothing. Leases are reset: a run some worker held is
handed back (RUNNING becomes ENQUEUED, a compensating run stays COMPENSATING), so the first
worker on the new store takes it and resumes from its checkpoints. The source is only read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from baton.core.errors import StoreError
from baton.store.sql.base import SQLStore
from baton.store.sql.text import _UNCLAIMED_STATUS, Conn

# in dependency order; `workers` is not copied (liveness belongs to the old store)
TABLES = (
    "runs",
    "steps",
    "signals",
    "approvals",
    "queues",
    "queue_starts",
    "schedules",
    "payloads",
    "events",
    "webhook_subscriptions",
    "webhook_deliveries",
    "cursors",
    "flags",
)
_BATCH = 500


class MigrationError(StoreError):
    """A migration that cannot start (a non-empty target, live workers, the same store)."""


@dataclass
class MigrationReport:
    source: str
    target: str
    rows: dict[str, int] = field(default_factory=dict)
    leases_reset: int = 0
    seconds: float = 0.0


def migrate(
    source: SQLStore, target: SQLStore, now: float, worker_ttl: float = 30.0, force: bool = False
) -> MigrationReport:
    """Copy everything in `source` into the empty store `target`, in one transaction."""
    if source.location == target.location:
        raise MigrationError(f"source and target are the same store ({source.location})")
    live = [w.worker_id for w in source.list_workers() if now - w.heartbeat_at <= worker_ttl]
    if live and not force:
        raise MigrationError(
            f"{len(live)} worker(s) still heartbeat on {source.location} "
            f"({', '.join(live[:3])}): stop them first, or pass --force"
        )
    t0 = time.perf_counter()
    report = MigrationReport(source.location, target.location)
    reader = source._read()
    columns = {t: _columns(reader, t) for t in TABLES}

    def op(conn: Conn) -> None:
        occupied = {
            t: n for t in TABLES if (n := conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
        }
        if occupied:
            shown = ", ".join(f"{n} {t}" for t, n in occupied.items())
            raise MigrationError(f"the target {target.location} is not empty ({shown})")
        for table in TABLES:
            report.rows[table] = _copy(reader, conn, table, columns[table])
        report.leases_reset = conn.execute(
            f"UPDATE runs SET status={_UNCLAIMED_STATUS}, owner=NULL, lease_expires_at=NULL, "
            f"updated_at=? WHERE owner IS NOT NULL OR status = 'RUNNING'",
            (now,),
        ).rowcount
        after = getattr(conn, "after_import", None)
        if after is not None:
            after()

    target.write(op).result()
    report.seconds = time.perf_counter() - t0
    return report


def _columns(reader: Any, table: str) -> list[str]:
    cur = reader.execute(f"SELECT * FROM {table} LIMIT 0")
    return [d[0] for d in cur.description]


def _copy(reader: Any, conn: Conn, table: str, columns: list[str]) -> int:
    names = ", ".join(columns)
    insert = f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' for _ in columns)})"
    order = ", ".join(_KEYS.get(table, columns[:1]))
    count, offset = 0, 0
    while True:  # in pages, so a large store is never held in memory at once
        rows = reader.execute(
            f"SELECT {names} FROM {table} ORDER BY {order} LIMIT ? OFFSET ?", (_BATCH, offset)
        ).fetchall()
        if not rows:
            return count
        conn.executemany(insert, [tuple(r) for r in rows])
        count += len(rows)
        offset += len(rows)


_KEYS = {
    "runs": ["run_id"],
    "steps": ["run_id", "seq"],
    "signals": ["seq"],
    "approvals": ["run_id", "seq"],
    "queues": ["name"],
    "queue_starts": ["queue", "at"],
    "schedules": ["name"],
    "payloads": ["hash"],
    "events": ["seq"],
}
