"""Runs: start, list with filters and cursor pagination, get, cancel, redrive, fork, signal."""

from __future__ import annotations

import inspect
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from baton.core.errors import RunNotFound
from baton.core.roles import Role
from baton.engine.app import App
from baton.server.auth import guard
from baton.server.context import Control, control
from baton.server.views import JsonValue, Run, Step, Text, run_view, step_view
from baton.store.records import RunStatus

router = APIRouter(prefix="/api/v1", tags=["runs"])
Ctl = Annotated[Control, Depends(control)]
STATUSES = [str(s) for s in RunStatus]
# keyword names App.start keeps for itself: a workflow's kwargs cannot use them
RESERVED = frozenset(inspect.signature(App.start).parameters) - {"self", "args", "kwargs"}


class StartRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workflow: Text = Field(min_length=1, max_length=200)
    version: Text | None = Field(default=None, min_length=1, max_length=100)
    input: JsonValue = Field(default=None, description="Shorthand for args=[input].")
    args: list[JsonValue] | None = None
    kwargs: dict[str, JsonValue] | None = None
    idempotency_key: Text | None = Field(default=None, min_length=1, max_length=500)
    correlation_id: Text | None = Field(default=None, min_length=1, max_length=500)
    priority: int = Field(default=0, ge=-(2**31), le=2**31 - 1)
    queue: Text = Field(default="default", min_length=1, max_length=200)
    timeout: float | None = Field(default=None, gt=0, le=10**9)
    concurrency_key: Text | None = Field(default=None, min_length=1, max_length=500)
    key_limit: int | None = Field(default=None, ge=1, le=10**6)
    debounce_key: Text | None = Field(default=None, min_length=1, max_length=500)
    debounce: float | None = Field(default=None, gt=0, le=10**9)

    @field_validator("kwargs")
    @classmethod
    def _not_reserved(cls, kwargs: dict[str, Any] | None) -> dict[str, Any] | None:
        taken = sorted(set(kwargs or ()) & RESERVED)
        if taken:
            raise ValueError(f"{', '.join(taken)}: reserved for Baton; give it as a field")
        return kwargs

    @model_validator(mode="after")
    def _one_input(self) -> StartRun:
        if self.input is not None and self.args is not None:
            raise ValueError("give either input or args, not both")
        return self

    def call_args(self) -> list[Any]:
        if self.args is not None:
            return self.args
        return [] if self.input is None else [self.input]


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text = Field(min_length=1, max_length=200)
    payload: JsonValue = None


class SignalSent(BaseModel):
    signal_id: str
    run_id: str
    name: str


class ForkInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    args: list[JsonValue] = Field(default_factory=list)
    kwargs: dict[str, JsonValue] = Field(default_factory=dict)


class Fork(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_step: int = Field(ge=1, le=10**6, description="1-based: steps below it are reused.")
    input: ForkInput | None = None


class RunPage(BaseModel):
    items: list[Run]
    next_cursor: str | None = None


def _get(ctl: Control, run_id: str) -> Run:
    run = ctl.app.get_run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run_view(run)


@router.post(
    "/runs",
    status_code=201,
    response_model=Run,
    responses={200: {"model": Run, "description": "The run an idempotency key matched"}},
    **guard(Role.OPERATOR),
)
async def start_run(body: StartRun, ctl: Ctl) -> Response:
    """Durably record a run (answered after the commit); 200 when the idempotency key matched
    an existing run."""
    # awaited on the event loop: the commit is the only wait, and no thread is held for it
    handle = await ctl.app.start_async(
        body.workflow,
        *body.call_args(),
        version=body.version,
        idempotency_key=body.idempotency_key,
        correlation_id=body.correlation_id,
        priority=body.priority,
        queue=body.queue,
        timeout=body.timeout,
        concurrency_key=body.concurrency_key,
        key_limit=body.key_limit,
        debounce_key=body.debounce_key,
        debounce=body.debounce,
        **(body.kwargs or {}),
    )
    run = handle.record if handle.record is not None else ctl.app.get_run(handle.id)
    if run is None:
        raise RunNotFound(handle.id)
    # the view is serialized once here, rather than validated again against response_model
    return Response(
        run_view(run).model_dump_json(),
        status_code=201 if handle.created else 200,
        media_type="application/json",
        headers={"Location": f"/api/v1/runs/{handle.id}"},
    )


@router.get("/runs", response_model=RunPage, **guard(Role.VIEWER))
def list_runs(
    ctl: Ctl,
    status: Annotated[list[str] | None, Query(description="Repeat or comma-separate.")] = None,
    workflow: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> RunPage:
    """Newest first; pass `next_cursor` back as `cursor` for the next page."""
    statuses = [s.strip().upper() for v in status or () for s in v.split(",") if s.strip()]
    unknown = [s for s in statuses if s not in STATUSES]
    if unknown:
        raise ValueError(f"unknown status {unknown[0]!r}; one of {', '.join(STATUSES)}")
    runs = ctl.app.store.list_runs(statuses or None, workflow, limit + 1, cursor)
    more = len(runs) > limit
    runs = runs[:limit]
    return RunPage(items=[run_view(r) for r in runs], next_cursor=runs[-1].run_id if more else None)


@router.get("/runs/{run_id}", response_model=Run, **guard(Role.VIEWER))
def get_run(run_id: str, ctl: Ctl) -> Run:
    return _get(ctl, run_id)


@router.get("/runs/{run_id}/steps", response_model=list[Step], **guard(Role.VIEWER))
def run_steps(run_id: str, ctl: Ctl) -> list[Step]:
    _get(ctl, run_id)
    return [step_view(s) for s in ctl.app.steps(run_id)]


@router.post("/runs/{run_id}/cancel", response_model=Run, **guard(Role.OPERATOR))
def cancel_run(run_id: str, ctl: Ctl) -> Run:
    return run_view(ctl.app.cancel(run_id))


@router.post("/runs/{run_id}/redrive", response_model=Run, **guard(Role.OPERATOR))
def redrive_run(run_id: str, ctl: Ctl) -> Run:
    return _get(ctl, ctl.app.redrive(run_id).id)


@router.post("/runs/{run_id}/fork", status_code=201, response_model=Run, **guard(Role.OPERATOR))
def fork_run(run_id: str, body: Fork, ctl: Ctl, response: Response) -> Run:
    given = None if body.input is None else body.input.model_dump()
    handle = ctl.app.fork(run_id, body.from_step, given)
    response.headers["Location"] = f"/api/v1/runs/{handle.id}"
    return _get(ctl, handle.id)


@router.post(
    "/runs/{run_id}/signals", status_code=202, response_model=SignalSent, **guard(Role.OPERATOR)
)
def signal_run(run_id: str, body: Signal, ctl: Ctl) -> SignalSent:
    signal_id = ctl.app.signal(run_id, body.name, body.payload)
    return SignalSent(signal_id=signal_id, run_id=run_id, name=body.name)
