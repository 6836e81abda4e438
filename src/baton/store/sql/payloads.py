"""Large payloads on SQLite: stored once, by content hash, outside the rows that use them.

A serialized value longer than the store's threshold (in characters) is written to `payloads`
and its column holds a reference, `@payload:<blake2b hex digest>`, instead. A reference starts
with "@", which no JSON text does, so it never collides with a real value. Identical values
share one row. Writes spill inside the writer's transaction and reads resolve before a record
leaves the store, so callers only ever see the values themselves.

Small values cost one length check on write and one prefix check on read.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import overload

from baton.core.errors import PayloadMissing
from baton.store.records import RUN_COLUMNS, STEP_COLUMNS, RunRecord, StepRecord
from baton.store.sql.text import Conn

PREFIX = "@payload:"
DEFAULT_THRESHOLD = 64 * 1024

# the columns of each row that may hold a reference
RUN_PAYLOADS = (RUN_COLUMNS.index("input"), RUN_COLUMNS.index("output"))
STEP_PAYLOADS = (STEP_COLUMNS.index("output"), STEP_COLUMNS.index("input"))

_INSERT = (
    "INSERT INTO payloads (hash, data, size, created_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (hash) DO NOTHING"
)


@overload
def spill(conn: Conn, text: str, now: float, threshold: int) -> str: ...
@overload
def spill(conn: Conn, text: None, now: float, threshold: int) -> None: ...


def spill(conn: Conn, text: str | None, now: float, threshold: int) -> str | None:
    """`text` itself when it is at most `threshold` characters, else a reference to it.

    Call it in a write operation (on the writer's connection): the payload row commits, or
    rolls back, with the row that refers to it.
    """
    if text is None or len(text) <= threshold:
        return text
    data = text.encode()
    digest = hashlib.blake2b(data, digest_size=32).hexdigest()
    conn.execute(_INSERT, (digest, text, len(data), now))
    return PREFIX + digest


@overload
def resolve(conn: Conn, text: str) -> str: ...
@overload
def resolve(conn: Conn, text: None) -> None: ...


def resolve(conn: Conn, text: str | None) -> str | None:
    """The stored text a column holds: `text` itself, or the payload it refers to.

    Raises PayloadMissing when the referenced payload is not in the store.
    """
    if text is None or not text.startswith(PREFIX):
        return text
    digest = text[len(PREFIX) :]
    row = conn.execute("SELECT data FROM payloads WHERE hash = ?", (digest,)).fetchone()
    if row is None:
        raise PayloadMissing(digest)
    return row[0]


def is_reference(text: str | None) -> bool:
    return text is not None and text.startswith(PREFIX)


def spill_values(
    conn: Conn,
    values: tuple,
    columns: Sequence[int],
    now: float,
    threshold: int,
) -> tuple:
    """`values` (a row about to be written) with its large `columns` spilled.

    The same tuple comes back when nothing is large, which is the common case.
    """
    for i in columns:
        text = values[i]
        if text is not None and len(text) > threshold:
            break
    else:
        return values
    out = list(values)
    for i in columns:
        out[i] = spill(conn, out[i], now, threshold)
    return tuple(out)


def run_record(conn: Conn, row: Sequence) -> RunRecord:
    """A runs row (RUN_COLUMNS order) as a record, its input and output resolved."""
    run = RunRecord(*row)
    if is_reference(run.input):
        run.input = resolve(conn, run.input)
    if is_reference(run.output):
        run.output = resolve(conn, run.output)
    return run


def step_record(conn: Conn, row: Sequence) -> StepRecord:
    """A steps row (STEP_COLUMNS order) as a record, its output and input resolved."""
    step = StepRecord(*row)
    if is_reference(step.output):
        step.output = resolve(conn, step.output)
    if is_reference(step.input):
        step.input = resolve(conn, step.input)
    return step
