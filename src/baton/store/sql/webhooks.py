"""Outbound webhooks in SQL: subscriptions, the exactly-once fan-out, and durable deliveries.

Fan-out: a deliverer reads the event log after the `webhooks` cursor and hands a batch to
`fan_out_webhooks`, which in ONE transaction moves the cursor from the position it read
(compare-and-swap: when another deliverer moved it first, nothing is written) and inserts a
delivery per (active subscription, matching event), skipping pairs that exist already. So
every event reaches every subscription once, across restarts and any number of nodes.

A subscription receives the events after the last seq in its own cursor row
(`webhook:<id>`), set when it is created or re-activated. Subscription changes and fan-outs
hold one transaction lock (PostgreSQL), so they are ordered.

Deliveries are claimed with a lease: the claim sets `owner`, `lease_expires_at` and moves
`available_at` to the lease's end, so a delivery whose deliverer died is simply due again.
The claim counts the attempt; the outcome is written only while the claim is still the
deliverer's (same owner, same attempt count).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from baton.core.ids import new_id
from baton.store.records import EventRecord
from baton.store.sql.text import Conn, _lock_key
from baton.store.webhooks import (
    DELIVERY_COLUMNS,
    FAN_OUT_CURSOR,
    SUBSCRIPTION_COLUMNS,
    ClaimedDelivery,
    DeliveryStatus,
    WebhookDelivery,
    WebhookSubscription,
    start_cursor,
    type_matches,
)

_SUB_SELECT = f"SELECT {', '.join(SUBSCRIPTION_COLUMNS)} FROM webhook_subscriptions"
_SUB_INSERT = (
    f"INSERT INTO webhook_subscriptions ({', '.join(SUBSCRIPTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in SUBSCRIPTION_COLUMNS)})"
)
_DELIVERY_SELECT = f"SELECT {', '.join(DELIVERY_COLUMNS)} FROM webhook_deliveries"
_DELIVERY_INSERT = (
    "INSERT INTO webhook_deliveries (id, subscription_id, event_seq, event_id, event_type, "
    "status, attempts, available_at, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?) "
    "ON CONFLICT (subscription_id, event_id) DO NOTHING"
)
_EVENT_COLUMNS = ", ".join(
    f"e.{c}"
    for c in ("seq", "id", "type", "source", "subject", "time", "correlation_id", "run_id", "data")
)
_LOCK = "baton:webhooks"  # subscription changes and fan-outs, one at a time
_CURSOR_SET = (
    "INSERT INTO cursors (name, seq, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (name) DO UPDATE SET seq = excluded.seq, updated_at = excluded.updated_at"
)
_UNSET: Any = object()


class WebhookOps:
    """Store calls for outbound webhooks (mixed into SQLStore)."""

    _writer: Any
    _read: Any

    # -- subscriptions ---------------------------------------------------------------------
    def create_webhook(self, subscription: WebhookSubscription) -> Future[WebhookSubscription]:
        """Insert `subscription`; it receives the events logged from now on."""
        values = subscription.row()

        def op(conn: Conn) -> WebhookSubscription:
            _lock_key(conn, _LOCK)
            if subscription.active:
                _start_now(conn, subscription.id, subscription.created_at)
            conn.execute(_SUB_INSERT, values)
            return subscription

        return self._writer.submit(op)

    def list_webhooks(self) -> list[WebhookSubscription]:
        rows = self._read().execute(f"{_SUB_SELECT} ORDER BY created_at, id").fetchall()
        return [WebhookSubscription.from_row(r) for r in rows]

    def get_webhook(self, subscription_id: str) -> WebhookSubscription | None:
        row = self._read().execute(f"{_SUB_SELECT} WHERE id = ?", (subscription_id,)).fetchone()
        return WebhookSubscription.from_row(row) if row else None

    def update_webhook(
        self,
        subscription_id: str,
        now: float,
        *,
        active: bool | None = None,
        event_types: Sequence[str] | None = None,
        url: str | None = None,
        description: str | None = _UNSET,
    ) -> Future[WebhookSubscription | None]:
        """Change what is given (None leaves a field as it is; `description=None` clears it).
        A subscription made active again receives the events logged from then on. Resolves
        to the subscription as stored, or None when there is none with this id."""
        changes: dict[str, Any] = {}
        if event_types is not None:
            changes["event_types"] = json.dumps(list(event_types))
        if url is not None:
            changes["url"] = url
        if description is not _UNSET:
            changes["description"] = description
        if active is not None:
            changes["active"] = int(active)

        def op(conn: Conn) -> WebhookSubscription | None:
            _lock_key(conn, _LOCK)
            found = _get_subscription(conn, subscription_id)
            if found is None:
                return None
            if active and not found.active:
                _start_now(conn, subscription_id, now)
            if changes:
                assignments = ", ".join(f"{c} = ?" for c in changes)
                conn.execute(
                    f"UPDATE webhook_subscriptions SET {assignments}, updated_at = ? WHERE id = ?",
                    (*changes.values(), now, subscription_id),
                )
            return _get_subscription(conn, subscription_id)

        return self._writer.submit(op)

    def delete_webhook(self, subscription_id: str) -> Future[bool]:
        """Remove a subscription with its deliveries; resolves to whether it existed."""

        def op(conn: Conn) -> bool:
            _lock_key(conn, _LOCK)
            conn.execute(
                "DELETE FROM webhook_deliveries WHERE subscription_id = ?", (subscription_id,)
            )
            conn.execute("DELETE FROM cursors WHERE name = ?", (start_cursor(subscription_id),))
            cur = conn.execute("DELETE FROM webhook_subscriptions WHERE id = ?", (subscription_id,))
            return cur.rowcount == 1

        return self._writer.submit(op)

    # -- fan-out ---------------------------------------------------------------------------
    def get_cursor(self, name: str) -> int | None:
        """The seq stored in cursor `name`, or None when there is no such cursor."""
        row = self._read().execute("SELECT seq FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def fan_out_webhooks(
        self,
        cursor: str,
        after: int,
        upto: int,
        events: Sequence[EventRecord],
        now: float,
    ) -> Future[int | None]:
        """Move cursor `cursor` from `after` to `upto` and insert the deliveries of `events`
        (those in (after, upto]) to every active subscription that wants them, in one
        transaction. Resolves to the number of (subscription, event) pairs matched (a pair
        that has a delivery already is skipped), or None when the cursor was not at `after`
        (another deliverer moved it: nothing is written)."""
        batch = [(e.seq, e.id, e.type) for e in events]

        def op(conn: Conn) -> int | None:
            _lock_key(conn, _LOCK)
            moved = conn.execute(
                "UPDATE cursors SET seq = ?, updated_at = ? WHERE name = ? AND seq = ?",
                (upto, now, cursor, after),
            ).rowcount
            if moved != 1:
                if after != 0:
                    return None
                # no cursor yet counts as one at 0
                moved = conn.execute(
                    "INSERT INTO cursors (name, seq, updated_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO NOTHING",
                    (cursor, upto, now),
                ).rowcount
                if moved != 1:
                    return None
            subscriptions = conn.execute(
                "SELECT s.id, s.event_types, COALESCE(c.seq, 0) FROM webhook_subscriptions s "
                f"LEFT JOIN cursors c ON c.name = '{start_cursor('')}' || s.id WHERE s.active = 1"
            ).fetchall()
            rows = []
            for sub_id, types_json, start in subscriptions:
                patterns = json.loads(types_json)
                rows.extend(
                    (new_id(), sub_id, seq, event_id, event_type, now, now, now)
                    for seq, event_id, event_type in batch
                    if start < seq <= upto and type_matches(patterns, event_type)
                )
            if rows:
                conn.executemany(_DELIVERY_INSERT, rows)
            return len(rows)

        return self._writer.submit(op)

    # -- deliveries --------------------------------------------------------------------------
    def claim_webhook_deliveries(
        self,
        owner: str,
        limit: int,
        now: float,
        lease: float,
        per_subscription: int | None = None,
        busy: Mapping[str, int] | None = None,
    ) -> Future[list[ClaimedDelivery]]:
        """Take up to `limit` due deliveries of active subscriptions for `lease` seconds,
        counting an attempt on each; oldest first, but at most `per_subscription` (less what
        `busy` says the caller already holds) of any one subscription, so that a backlog for
        one URL never keeps the others waiting."""
        cap = per_subscription or limit
        held = {k: n for k, n in (busy or {}).items() if n > 0}
        full = [k for k, n in held.items() if n >= cap]
        where = f"AND subscription_id NOT IN ({', '.join('?' for _ in full)}) " if full else ""

        def op(conn: Conn) -> list[ClaimedDelivery]:
            candidates = conn.execute(
                "SELECT id, subscription_id FROM (SELECT id, subscription_id, available_at, "
                "ROW_NUMBER() OVER (PARTITION BY subscription_id ORDER BY available_at, id) "
                "AS place FROM webhook_deliveries WHERE status = 'PENDING' AND available_at <= ? "
                "AND subscription_id IN (SELECT id FROM webhook_subscriptions WHERE active = 1) "
                f"{where}) AS due WHERE place <= ? ORDER BY available_at, id LIMIT ?",
                (now, *full, cap, limit * 2),
            ).fetchall()
            room = dict.fromkeys((sub for _, sub in candidates), cap)
            chosen = []
            for delivery_id, sub in candidates:
                if room[sub] > held.get(sub, 0) and len(chosen) < limit:
                    room[sub] -= 1
                    chosen.append(delivery_id)
            if not chosen:
                return []
            # checked again as it is written: another process may have taken one meanwhile
            ids = conn.execute(
                "UPDATE webhook_deliveries SET owner = ?, lease_expires_at = ?, available_at = ?, "
                "attempts = attempts + 1, updated_at = ? WHERE status = 'PENDING' "
                f"AND available_at <= ? AND id IN ({', '.join('?' for _ in chosen)}) RETURNING id",
                (owner, now + lease, now + lease, now, now, *chosen),
            ).fetchall()
            if not ids:
                return []
            marks = ", ".join("?" for _ in ids)
            rows = conn.execute(
                f"SELECT {', '.join('d.' + c for c in DELIVERY_COLUMNS)}, s.url, s.secret, "
                f"{_EVENT_COLUMNS} FROM webhook_deliveries d "
                "JOIN webhook_subscriptions s ON s.id = d.subscription_id "
                "LEFT JOIN events e ON e.seq = d.event_seq "
                f"WHERE d.id IN ({marks}) ORDER BY d.available_at, d.id",
                [r[0] for r in ids],
            ).fetchall()
            width = len(DELIVERY_COLUMNS)
            return [
                ClaimedDelivery(
                    WebhookDelivery.from_row(r[:width]),
                    r[width],
                    r[width + 1],
                    EventRecord(*r[width + 2 :]) if r[width + 2] is not None else None,
                )
                for r in rows
            ]

        return self._writer.submit(op)

    def next_webhook_due(self) -> float | None:
        """When the earliest PENDING delivery of an active subscription is due (a held one:
        when its lease ends)."""
        row = (
            self._read()
            .execute(
                "SELECT MIN(available_at) FROM webhook_deliveries WHERE status = 'PENDING' "
                "AND subscription_id IN (SELECT id FROM webhook_subscriptions WHERE active = 1)"
            )
            .fetchone()
        )
        return None if row is None or row[0] is None else float(row[0])

    def settle_webhook_delivery(
        self,
        delivery_id: str,
        owner: str,
        attempts: int,
        now: float,
        status: DeliveryStatus,
        *,
        retry_at: float | None = None,
        last_status: int | None = None,
        last_error: str | None = None,
    ) -> Future[bool]:
        """Write an attempt's outcome: DELIVERED, FAILED for good, or PENDING again at
        `retry_at`. Resolves to False (nothing written) when the claim is no longer this
        deliverer's: its lease ran out and another deliverer took it, or it was deleted."""
        status = DeliveryStatus(status)
        if status is DeliveryStatus.PENDING and retry_at is None:
            raise ValueError("a delivery to retry needs retry_at")
        available = retry_at if status is DeliveryStatus.PENDING else now
        delivered = now if status is DeliveryStatus.DELIVERED else None

        def op(conn: Conn) -> bool:
            cur = conn.execute(
                "UPDATE webhook_deliveries SET status = ?, available_at = ?, owner = NULL, "
                "lease_expires_at = NULL, last_status = ?, last_error = ?, updated_at = ?, "
                "delivered_at = ? WHERE id = ? AND owner = ? AND attempts = ? "
                "AND status = 'PENDING'",
                (
                    str(status),
                    available,
                    last_status,
                    last_error,
                    now,
                    delivered,
                    delivery_id,
                    owner,
                    attempts,
                ),
            )
            return cur.rowcount == 1

        return self._writer.submit(op)

    def list_webhook_deliveries(
        self,
        subscription_id: str | None = None,
        status: Sequence[str] | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[WebhookDelivery]:
        """Deliveries, newest first; `before` is the id of the last one of the previous page."""
        clauses, params = [], []
        if subscription_id is not None:
            clauses.append("subscription_id = ?")
            params.append(subscription_id)
        if status:
            clauses.append(f"status IN ({', '.join('?' for _ in status)})")
            params.extend(status)
        if before is not None:
            clauses.append("id < ?")
            params.append(before)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = (
            self._read()
            .execute(f"{_DELIVERY_SELECT}{where} ORDER BY id DESC LIMIT ?", (*params, limit))
            .fetchall()
        )
        return [WebhookDelivery.from_row(r) for r in rows]

    def get_webhook_delivery(self, delivery_id: str) -> WebhookDelivery | None:
        row = self._read().execute(f"{_DELIVERY_SELECT} WHERE id = ?", (delivery_id,)).fetchone()
        return WebhookDelivery.from_row(row) if row else None

    def redeliver_webhook(
        self, delivery_id: str, now: float
    ) -> Future[tuple[WebhookDelivery | None, bool]]:
        """Make a FAILED or DELIVERED delivery PENDING again, due now, with its attempts at 0.
        Resolves to (the delivery as stored or None if there is none, whether it changed: a
        PENDING delivery is left as it is)."""

        def op(conn: Conn) -> tuple[WebhookDelivery | None, bool]:
            row = conn.execute(
                "UPDATE webhook_deliveries SET status = 'PENDING', attempts = 0, available_at = ?, "
                "owner = NULL, lease_expires_at = NULL, delivered_at = NULL, updated_at = ? "
                "WHERE id = ? AND status IN ('FAILED', 'DELIVERED') "
                f"RETURNING {', '.join(DELIVERY_COLUMNS)}",
                (now, now, delivery_id),
            ).fetchone()
            if row is not None:
                return WebhookDelivery.from_row(row), True
            row = conn.execute(f"{_DELIVERY_SELECT} WHERE id = ?", (delivery_id,)).fetchone()
            return (WebhookDelivery.from_row(row) if row else None), False

        return self._writer.submit(op)


def _get_subscription(conn: Conn, subscription_id: str) -> WebhookSubscription | None:
    row = conn.execute(f"{_SUB_SELECT} WHERE id = ?", (subscription_id,)).fetchone()
    return WebhookSubscription.from_row(row) if row else None


def _start_now(conn: Conn, subscription_id: str, now: float) -> None:
    """`subscription_id` (becoming active) receives the events logged after this one. When no
    other subscription is active, nothing waits to be fanned out: the fan-out cursor jumps
    ahead too (it never reads the past again)."""
    top = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]
    conn.execute(_CURSOR_SET, (start_cursor(subscription_id), top, now))
    others = conn.execute(
        "SELECT 1 FROM webhook_subscriptions WHERE active = 1 AND id != ? LIMIT 1",
        (subscription_id,),
    ).fetchone()
    if others is None:
        conn.execute(f"{_CURSOR_SET} WHERE cursors.seq < excluded.seq", (FAN_OUT_CURSOR, top, now))
