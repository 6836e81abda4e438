"""Agents as JSON documents, for `ps`, `status` and the control socket."""

from __future__ import annotations

import time
from typing import Any

from baton.agents.records import AgentRecord
from baton.core.events import rfc3339
from baton.core.redact import redact


def row(rec: AgentRecord) -> dict[str, Any]:
    """One line of `ps`."""
    inst = rec.instance
    now = time.monotonic()
    return {
        "name": rec.name,
        "state": rec.state.value,
        "execution": rec.spec.execution.value,
        "pid": inst.pid if inst else None,
        "generation": rec.generation,
        "restarts": rec.total_restarts,
        "uptime": round(now - inst.started_mono, 3) if inst else None,
        "heartbeat_age": round(now - inst.last_beat, 3) if inst and inst.ready_at else None,
        "depends_on": [d.name for d in rec.spec.depends_on],
        "priority": rec.spec.priority,
        "reason": rec.reason,
    }


def status(rec: AgentRecord) -> dict[str, Any]:
    """Everything about one agent; secrets in its config masked."""
    spec = rec.spec
    inst = rec.instance
    doc = row(rec)
    doc.update(
        {
            "class": spec.class_path,
            "config": redact(rec.config if rec.config is not None else spec.config),
            "depends_on": [{"name": d.name, "until": d.until} for d in spec.depends_on],
            "on_dependency_failure": spec.on_dependency_failure.value,
            "restart_policy": spec.restart.model_dump(mode="json"),
            "restarts_in_window": len(rec.restarts),
            "heartbeat_timeout": spec.heartbeat_timeout,
            "start_timeout": spec.start_timeout,
            "stop_timeout": spec.stop_timeout,
            "blocked_by": rec.blocked_by,
            "completed_once": rec.completed_once,
            "instance": _instance(inst) if inst else None,
            "stuck": [_instance(s) for s in rec.stuck],
            "last_exit": rec.last_exit,
            "last_error": rec.last_error,
        }
    )
    return doc


def _instance(inst: Any) -> dict[str, Any]:
    return {
        **inst.describe(),
        "execution": inst.execution,
        "started_at": rfc3339(inst.started_at),
        "ready_at": rfc3339(inst.ready_at) if inst.ready_at else None,
        "last_heartbeat_at": rfc3339(inst.last_beat_wall) if inst.last_beat_wall else None,
        "stop_reason": inst.stop_reason,
        "stop_stage": inst.stop_stage,
    }


def running(rec: AgentRecord) -> dict[str, Any] | None:
    """What `stats` needs to find the agent's process or thread."""
    inst = rec.instance
    if inst is None:
        return None
    return {
        "name": rec.name,
        "generation": inst.generation,
        "execution": inst.execution,
        "pid": inst.pid,
        "native_thread_id": inst.native_thread_id,
        "started_at": inst.started_at,
    }
