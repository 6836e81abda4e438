"""Claims on PostgreSQL: due runs are taken with `FOR UPDATE SKIP LOCKED`, so workers in
many processes claim at once without waiting on each other or taking the same run.

Runs under a limit (a queue with a concurrency or rate limit, or a concurrency key) are
admitted by the shared admission code, holding a transaction lock per queue and per key
involved: two claims admit into the same budget one after the other, while claims for
other queues and keys go on in parallel.
"""

from __future__ import annotations

from baton.store.sql.flow import (
    _CLAIM_SET,
    _LIMITED_QUEUES,
    _ORDER,
    _RETURNING,
    _claim_admitted,
    _marks,
)
from baton.store.sql.text import _READY, Conn

_SCOPE_LIMIT = 256  # queues and keys locked by one claim, at most


def claim_rows(
    conn: Conn,
    worker_id: str,
    where: str,
    params: tuple,
    limit: int,
    now: float,
    lease: float,
) -> tuple[list[tuple], float | None]:
    claim = (worker_id, now + lease, now, now)
    free = (
        f"{_READY} AND available_at <= ? {where} AND concurrency_key IS NULL "
        f"AND queue NOT IN ({_LIMITED_QUEUES})"
    )
    rows = conn.execute(
        f"UPDATE runs {_CLAIM_SET} WHERE run_id IN (SELECT run_id FROM runs WHERE {free} "
        f"{_ORDER} LIMIT ? FOR UPDATE SKIP LOCKED) {_RETURNING}",
        (*claim, now, *params, limit),
    ).fetchall()
    if len(rows) >= limit:
        return rows, None
    limited = conn.execute(
        f"SELECT run_id, queue, concurrency_key FROM runs WHERE {_READY} AND available_at <= ? "
        f"{where} AND (concurrency_key IS NOT NULL OR queue IN ({_LIMITED_QUEUES})) "
        f"LIMIT {_SCOPE_LIMIT}",
        (now, *params),
    ).fetchall()
    if not limited:
        return rows, None
    bounded = {r[0] for r in conn.execute(_LIMITED_QUEUES).fetchall()}
    queues = sorted({q for _, q, _ in limited})
    keys = sorted({k for _, _, k in limited if k is not None})
    for name in sorted({f"queue:{q}" for q in queues if q in bounded} | {f"key:{k}" for k in keys}):
        conn.lock_key(f"baton:flow:{name}")  # type: ignore[attr-defined]
    scope = f"AND queue IN ({_marks(queues)}) "
    scope_params: tuple = tuple(queues)
    if keys:
        scope += f"AND (concurrency_key IS NULL OR concurrency_key IN ({_marks(keys)})) "
        scope_params += tuple(keys)
    else:
        scope += "AND concurrency_key IS NULL "
    more, retry_at = _claim_admitted(
        conn, claim, f"{where} {scope}", (*params, *scope_params), limit - len(rows), now
    )
    return rows + more, retry_at
