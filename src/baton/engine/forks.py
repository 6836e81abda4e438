"""Forking a run: a new run of the same workflow version that reuses the source run's
successful checkpoints before a chosen step, and executes from that step on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton.core import events as ev
from baton.core import serialization
from baton.core.errors import UnknownWorkflow
from baton.core.events import run_event
from baton.core.ids import new_id
from baton.engine.handles import RunHandle
from baton.observability.logging import get_logger
from baton.store.records import RunRecord, RunStatus

if TYPE_CHECKING:
    from baton.engine.app import App

log = get_logger("baton.app")


def fork(app: App, run_id: str, from_step: int, input: dict[str, Any] | None) -> RunHandle:
    """See `App.fork`."""
    if isinstance(from_step, bool) or not isinstance(from_step, int):
        raise TypeError(f"from_step must be an int (a 1-based step number), got {from_step!r}")
    source = app._must_get(run_id)
    if app.registry.find(source.workflow, source.version) is None:
        served = [f"{name}@{version}" for name, version in app.registry.served()]
        raise UnknownWorkflow(source.workflow, source.version, served)
    payload = source.input if input is None else _encode_input(input)
    now = app.clock.now()
    fork_id = new_id()
    run = RunRecord(
        run_id=fork_id,
        workflow=source.workflow,
        version=source.version,
        status=RunStatus.ENQUEUED,
        queue=source.queue,
        priority=source.priority,
        available_at=now,
        correlation_id=source.correlation_id,  # the same piece of business, tried again
        input=payload,
        created_at=now,
        updated_at=now,
        timeout=source.timeout,
        deadline_at=None if source.timeout is None else now + source.timeout,
        concurrency_key=source.concurrency_key,
        key_limit=source.key_limit,
        forked_from=source.run_id,
    )
    events = [
        run_event(
            ev.RUN_FORKED,
            app.source,
            run,
            now,
            {"from_run": source.run_id, "from_step": from_step},
        ),
        run_event(
            ev.RUN_ENQUEUED, app.source, run, now, {"queue": run.queue, "priority": run.priority}
        ),
    ]
    app.store.fork_run(run, from_step, events).result()
    rt = app._ensure_runtime()
    if rt is not None:
        rt.wake()
    log.info("run forked", run_id=fork_id, from_run=source.run_id, from_step=from_step)
    return RunHandle(app, fork_id)


def _encode_input(input: Any) -> str:
    """`{"args": [...], "kwargs": {...}}` (either key may be left out) as the stored input."""
    if not isinstance(input, dict) or not set(input) <= {"args", "kwargs"}:
        raise TypeError(
            'input= takes {"args": [...], "kwargs": {...}} (the workflow\'s positional and '
            f"keyword arguments), got {input!r}"
        )
    args, kwargs = input.get("args", []), input.get("kwargs", {})
    if not isinstance(args, list | tuple):
        raise TypeError(f'input["args"] must be a list, got {type(args).__name__}')
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TypeError('input["kwargs"] must be a dict with str keys')
    return serialization.dumps({"args": list(args), "kwargs": kwargs}, "fork input")
