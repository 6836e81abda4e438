"""Waiting runs on SQLite: suspension, signals and approvals.

A waiting run is an unowned row with status WAITING and an `available_at` (its timer, or NEVER).
Whatever should make it look again (a signal, a decision, a child's end) bumps `wakeups`; a
run suspends only if nothing woke it since it was claimed, so no wake-up is ever lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from baton.core import serialization
from baton.core.errors import (
    ApprovalClosed,
    ApprovalNotFound,
    FenceLost,
    InvalidState,
    NotAnAssignee,
)
from baton.core.events import CloudEvent
from baton.core.ids import new_id
from baton.store.records import (
    NEVER,
    TERMINAL,
    ApprovalRecord,
    SignalRecord,
    StepRecord,
    StepStatus,
    step_values,
)
from baton.store.sql.payloads import STEP_PAYLOADS, resolve, spill, spill_values
from baton.store.sql.text import (
    _STEP_UPSERT,
    _WAKE,
    Conn,
    _check_fence,
    _event_rows,
    _get,
    _insert_events,
)

_APPROVAL_COLUMNS = (
    "run_id, seq, name, workflow, correlation_id, assignees, requested_at, deadline_at, "
    "on_timeout, status, decided_by, comment, decided_at"
)


def suspend(
    conn: Conn, run_id: str, fence: int, seen: int, available_at: float, now: float
) -> None:
    """Hand a RUNNING run back as WAITING until `available_at`, or at once if woken meanwhile."""
    cur = conn.execute(
        "UPDATE runs SET status='WAITING', owner=NULL, lease_expires_at=NULL, updated_at=?, "
        "available_at = CASE WHEN wakeups > ? THEN ? ELSE ? END "
        "WHERE run_id=? AND fence=? AND status='RUNNING'",
        (now, seen, now, available_at, run_id, fence),
    )
    if cur.rowcount != 1:
        raise FenceLost(run_id, fence)


def _save(conn: Conn, step: StepRecord, threshold: int) -> None:
    values = step_values(step)
    now = step.finished_at or step.started_at
    conn.execute(_STEP_UPSERT, spill_values(conn, values, STEP_PAYLOADS, now, threshold))


class WaitOps:
    """Store calls for sleeping, signalled and approval-waiting runs (mixed into SQLiteStore)."""

    _writer: Any
    _read: Any
    payload_threshold: int

    # -- suspension ----------------------------------------------------------------------
    def suspend_run(
        self,
        run_id: str,
        fence: int,
        seen_wakeups: int,
        available_at: float,
        now: float,
        step: StepRecord | None,
        events: Sequence[CloudEvent],
    ) -> Future[None]:
        rows = _event_rows(events)

        def op(conn: Conn) -> None:
            suspend(conn, run_id, fence, seen_wakeups, available_at, now)
            if step is not None:
                _save(conn, step, self.payload_threshold)
            _insert_events(conn, rows)

        return self._writer.submit(op)

    # -- signals -------------------------------------------------------------------------
    def send_signal(
        self, run_id: str, name: str, payload: str, now: float, events: Sequence[CloudEvent]
    ) -> Future[str]:
        rows = _event_rows(events)
        signal_id = new_id()

        def op(conn: Conn) -> str:
            run = _get(conn, run_id)
            if run.status in TERMINAL:
                raise InvalidState(run_id, run.status, f"signal {name!r} to")
            body = spill(conn, payload, now, self.payload_threshold)
            conn.execute(
                "INSERT INTO signals (id, run_id, name, payload, sent_at) VALUES (?, ?, ?, ?, ?)",
                (signal_id, run_id, name, body, now),
            )
            conn.execute(_WAKE, (now, run_id))
            _insert_events(conn, rows)
            return signal_id

        return self._writer.submit(op)

    def receive_signal(
        self,
        fence: int,
        seen_wakeups: int,
        step: StepRecord,
        signal: str,
        deadline: float | None,
        wake_at: float,
        now: float,
        timeout_error: str,
        events: dict[str, Sequence[CloudEvent]],
    ) -> Future[tuple[str, str | None]]:
        """Consume the oldest unconsumed `signal` of the run into checkpoint `step.seq`, or
        record the timeout, or suspend the run until `wake_at`: ("received", payload),
        ("timeout", None) or ("waiting", None), in one transaction."""
        rows = {k: _event_rows(v) for k, v in events.items()}

        def op(conn: Conn) -> tuple[str, str | None]:
            _check_fence(conn, step.run_id, fence)
            found = conn.execute(
                "SELECT seq, payload FROM signals WHERE run_id=? AND name=? "
                "AND consumed_seq IS NULL ORDER BY seq LIMIT 1",
                (step.run_id, signal),
            ).fetchone()
            if found is not None:
                conn.execute(
                    "UPDATE signals SET consumed_seq=?, consumed_at=? WHERE seq=?",
                    (step.seq, now, found[0]),
                )
                _save(
                    conn,
                    _with(step, StepStatus.SUCCEEDED, now, output=found[1]),
                    self.payload_threshold,
                )
                _insert_events(conn, rows.get("received", ()))
                return "received", resolve(conn, found[1])
            if deadline is not None and now >= deadline:
                _save(
                    conn,
                    _with(step, StepStatus.FAILED, now, error=timeout_error),
                    self.payload_threshold,
                )
                return "timeout", None
            suspend(conn, step.run_id, fence, seen_wakeups, wake_at, now)
            _save(conn, step, self.payload_threshold)
            _insert_events(conn, rows.get("waiting", ()))
            return "waiting", None

        return self._writer.submit(op)

    def list_signals(self, run_id: str) -> list[SignalRecord]:
        conn = self._read()
        rows = conn.execute(
            "SELECT seq, id, run_id, name, payload, sent_at, consumed_seq, consumed_at "
            "FROM signals WHERE run_id=? ORDER BY seq",
            (run_id,),
        ).fetchall()
        return [SignalRecord(*r[:4], resolve(conn, r[4]), *r[5:]) for r in rows]

    # -- approvals -----------------------------------------------------------------------
    def await_approval(
        self,
        fence: int,
        seen_wakeups: int,
        step: StepRecord,
        request: ApprovalRecord,
        run_deadline: float | None,
        now: float,
        source: str,
        make_event: Any,
    ) -> Future[tuple[str, dict[str, Any] | None]]:
        """Open the approval at checkpoint `step.seq` (first time), read its decision, or apply
        its timeout policy; suspend the run while it is pending. Returns ("decided", decision),
        ("failed", error document) or ("waiting", None)."""

        def op(conn: Conn) -> tuple[str, dict[str, Any] | None]:
            _check_fence(conn, step.run_id, fence)
            row = conn.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE run_id=? AND seq=?",
                (step.run_id, step.seq),
            ).fetchone()
            events: list[CloudEvent] = []
            if row is None:
                appr = request
                conn.execute(
                    f"INSERT INTO approvals ({_APPROVAL_COLUMNS}) VALUES "
                    f"(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    _approval_values(appr),
                )
                events.append(make_event("requested", appr, {}))
            else:
                appr = ApprovalRecord.from_row(row)
            expired = appr.deadline_at is not None and now >= appr.deadline_at
            if appr.status == "PENDING" and expired:
                policy = appr.on_timeout
                if policy.get("action") == "escalate":
                    to = list(policy.get("to", []))
                    nxt = policy.get("then") or {"action": "reject"}
                    deadline = now + float(policy["timeout"]) if policy.get("timeout") else None
                    conn.execute(
                        "UPDATE approvals SET assignees=?, deadline_at=?, on_timeout=? "
                        "WHERE run_id=? AND seq=?",
                        (
                            serialization.dumps(to),
                            deadline,
                            serialization.dumps(nxt),
                            appr.run_id,
                            appr.seq,
                        ),
                    )
                    events.append(make_event("escalated", appr, {"to": to, "deadline": deadline}))
                    appr.assignees, appr.deadline_at, appr.on_timeout = to, deadline, nxt
                else:
                    conn.execute(
                        "UPDATE approvals SET status='TIMED_OUT', decided_at=? "
                        "WHERE run_id=? AND seq=?",
                        (now, appr.run_id, appr.seq),
                    )
                    appr.status, appr.decided_at = "TIMED_OUT", now
                    events.append(make_event("timed_out", appr, {"action": policy.get("action")}))
                    if policy.get("action") == "fail":
                        error = policy["error"]
                        _save(
                            conn,
                            _with(step, StepStatus.FAILED, now, error=error),
                            self.payload_threshold,
                        )
                        _insert_events(conn, _event_rows(events))
                        return "failed", serialization.loads(error)
            if appr.status != "PENDING":
                decision = appr.decision()
                done = _with(step, StepStatus.SUCCEEDED, now, output=serialization.dumps(decision))
                _save(conn, done, self.payload_threshold)
                _insert_events(conn, _event_rows(events))
                return "decided", decision
            wake = appr.deadline_at if appr.deadline_at is not None else NEVER
            if run_deadline is not None:
                wake = min(wake, run_deadline)
            suspend(conn, step.run_id, fence, seen_wakeups, wake, now)
            _save(conn, step, self.payload_threshold)
            _insert_events(conn, _event_rows(events))
            return "waiting", {"wake": wake}

        return self._writer.submit(op)

    def decide_approval(
        self,
        run_id: str,
        name: str,
        approved: bool,
        by: str | None,
        comment: str | None,
        now: float,
        make_event: Any,
    ) -> Future[ApprovalRecord]:
        def op(conn: Conn) -> ApprovalRecord:
            run = _get(conn, run_id)
            row = conn.execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals WHERE run_id=? AND name=? "
                f"ORDER BY status = 'PENDING' DESC, seq DESC LIMIT 1",
                (run_id, name),
            ).fetchone()
            if row is None:
                if run.status in TERMINAL:
                    raise InvalidState(run_id, run.status, f"decide approval {name!r} of")
                raise ApprovalNotFound(run_id, name)
            appr = ApprovalRecord.from_row(row)
            if appr.status != "PENDING":
                raise ApprovalClosed(run_id, name, appr.status, appr.decided_by)
            if run.status in TERMINAL:
                raise InvalidState(run_id, run.status, f"decide approval {name!r} of")
            if appr.deadline_at is not None and now >= appr.deadline_at:
                raise ApprovalClosed(run_id, name, "TIMED_OUT")
            if appr.assignees and by not in appr.assignees:
                raise NotAnAssignee(run_id, name, by, appr.assignees)
            status = "APPROVED" if approved else "REJECTED"
            conn.execute(
                "UPDATE approvals SET status=?, decided_by=?, comment=?, decided_at=? "
                "WHERE run_id=? AND seq=? AND status='PENDING'",
                (status, by, comment, now, run_id, appr.seq),
            )
            appr.status, appr.decided_by, appr.comment, appr.decided_at = status, by, comment, now
            conn.execute(_WAKE, (now, run_id))
            _insert_events(conn, _event_rows([make_event("decided", appr, appr.decision())]))
            return appr

        return self._writer.submit(op)

    def list_approvals(
        self, status: str | None = "PENDING", run_id: str | None = None, limit: int = 100
    ) -> list[ApprovalRecord]:
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if run_id is not None:
            clauses.append("run_id = ?")
            params.append(run_id)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = (
            self._read()
            .execute(
                f"SELECT {_APPROVAL_COLUMNS} FROM approvals{where} "
                f"ORDER BY requested_at, run_id, seq LIMIT ?",
                (*params, limit),
            )
            .fetchall()
        )
        return [ApprovalRecord.from_row(r) for r in rows]


def _with(step: StepRecord, status: str, now: float, **fields: Any) -> StepRecord:
    out = StepRecord(*step_values(step))
    out.status = status
    out.finished_at = now
    for key, value in fields.items():
        setattr(out, key, value)
    return out


def _approval_values(a: ApprovalRecord) -> tuple:
    return (
        a.run_id,
        a.seq,
        a.name,
        a.workflow,
        a.correlation_id,
        serialization.dumps(a.assignees),
        a.requested_at,
        a.deadline_at,
        serialization.dumps(a.on_timeout),
        a.status,
        a.decided_by,
        a.comment,
        a.decided_at,
    )
