"""Feature flags: named JSON values that operators change while nodes run.

A flag row holds the value as JSON text, when it was last set and by whom. Every change
appends a `baton.flag.changed` event in the same transaction, carrying the new and the
previous value, so the event log is the flags' audit trail.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from baton.core import serialization
from baton.core.events import FLAG_CHANGED, CloudEvent
from baton.store.sql.text import Conn, _event_rows, _insert_events, _lock_key

_UPSERT = (
    "INSERT INTO flags (name, value, updated_at, updated_by) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET value = excluded.value, "
    "updated_at = excluded.updated_at, updated_by = excluded.updated_by"
)


class FlagOps:
    """Store calls for feature flags (mixed into SQLStore)."""

    _writer: Any
    _read: Any

    def set_flag(
        self,
        name: str,
        value_json: str,
        now: float,
        by: str | None = None,
        source: str = "baton",
    ) -> Future[str | None]:
        """Store `value_json` (JSON text) as flag `name`; resolves to the previous JSON text,
        or None if the flag had no stored value."""
        value = serialization.loads(value_json)  # also proves the text is JSON

        def op(conn: Conn) -> str | None:
            _lock_key(conn, f"baton:flag:{name}")
            previous = _value(conn, name)
            conn.execute(_UPSERT, (name, value_json, now, by))
            _insert_events(conn, _change(name, value, previous, False, now, by, source))
            return previous

        return self._writer.submit(op)

    def delete_flag(
        self,
        name: str,
        now: float | None = None,
        by: str | None = None,
        source: str = "baton",
    ) -> Future[bool]:
        """Remove flag `name`'s stored value; resolves to whether there was one (an event is
        appended only then)."""
        when = time.time() if now is None else now

        def op(conn: Conn) -> bool:
            _lock_key(conn, f"baton:flag:{name}")
            previous = _value(conn, name)
            if previous is None:
                return False
            conn.execute("DELETE FROM flags WHERE name = ?", (name,))
            _insert_events(conn, _change(name, None, previous, True, when, by, source))
            return True

        return self._writer.submit(op)

    def get_flag(self, name: str) -> str | None:
        """Flag `name`'s stored JSON text, or None."""
        return _value(self._read(), name)

    def list_flags(self) -> dict[str, str]:
        """Every stored flag: name -> JSON text, by name."""
        rows = self._read().execute("SELECT name, value FROM flags ORDER BY name").fetchall()
        return {name: value for name, value in rows}


def _value(conn: Conn, name: str) -> str | None:
    row = conn.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def _change(
    name: str,
    value: Any,
    previous: str | None,
    deleted: bool,
    now: float,
    by: str | None,
    source: str,
) -> list[tuple]:
    data = {
        "name": name,
        "value": value,
        "previous": serialization.loads(previous),
        "deleted": deleted,
        "by": by,
    }
    return _event_rows([CloudEvent(FLAG_CHANGED, source, subject=name, data=data, time=now)])
