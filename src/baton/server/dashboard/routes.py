"""The dashboard at `/`: runs, a run's timeline, approvals, dead letters, schedules, agents and
analytics, rendered on the server (jinja2) and kept live with htmx polling of partials.

Pages need the viewer role, actions the operator role (buttons are not drawn for viewers, and
every action checks the role again). Actions answer with a message for the `#flash` area and
fire `baton-refresh`, on which the lists reload themselves. See access.py for login and CSRF.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from baton.core.errors import RunNotFound
from baton.core.roles import Role
from baton.engine.analytics import summarize
from baton.observability.logging import get_logger
from baton.server.auth import Principal
from baton.server.context import Control, control
from baton.server.dashboard import access, render
from baton.server.dashboard.access import COOKIE, DashboardError, LoginNeeded
from baton.server.problems import Problem, status_of
from baton.server.routes import agents as agents_api
from baton.server.views import (
    approval_view,
    event_view,
    run_view,
    schedule_view,
    step_view,
)
from baton.store.records import REDRIVABLE, TERMINAL, RunStatus

router = APIRouter(include_in_schema=False)
Ctl = Annotated[Control, Depends(control)]
Form = Annotated[dict[str, str], Depends(access.form)]
env = render.environment()
log = get_logger("baton.dashboard")

STATUSES = [str(s) for s in RunStatus]
PAGE = 50
WINDOWS = {  # name: (seconds, buckets, long labels)
    "1h": (3600, 30, False),
    "24h": (86400, 48, False),
    "7d": (7 * 86400, 56, True),
}
MAX_CHARTS = 12
HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
REFRESH = {"HX-Trigger": "baton-refresh"}


def mount(api: FastAPI) -> None:
    """Add the dashboard to the control plane's app: pages, static files, error pages."""
    api.include_router(router)
    api.mount("/static", StaticFiles(directory=render.STATIC), name="static")
    api.add_exception_handler(DashboardError, _shown)  # type: ignore[arg-type]
    api.add_exception_handler(LoginNeeded, _to_login)  # type: ignore[arg-type]


# -- rendering --------------------------------------------------------------------------------
def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _html(
    request: Request,
    template: str,
    who: Principal | None,
    code: int = 200,
    headers: dict[str, str] | None = None,
    **ctx: Any,
) -> HTMLResponse:
    auth = request.app.state.control.auth
    html = env.get_template(template).render(
        base=_base(request),
        who=who,
        can_act=who is not None and who.role >= Role.OPERATOR,
        login=auth.required,
        session=access.from_cookie(request),
        nav=ctx.pop("nav", ""),
        **ctx,
    )
    return HTMLResponse(html, status_code=code, headers={**HEADERS, **(headers or {})})


def _flash(
    request: Request, text: str, tone: str, code: int = 200, detail: str = "", **headers: str
) -> HTMLResponse:
    return _html(request, "_flash.html", None, code, headers, text=text, tone=tone, detail=detail)


def _hx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


async def _shown(request: Request, exc: DashboardError) -> Response:
    if _hx(request):
        return _flash(
            request,
            exc.title,
            "bad",
            exc.status,
            exc.detail,
            **{"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
        )
    try:
        who: Principal | None = access.principal(request)
    except LoginNeeded:
        who = None
    return _html(request, "error.html", who, exc.status, title=exc.title, detail=exc.detail)


async def _to_login(request: Request, exc: LoginNeeded) -> Response:
    base = _base(request)
    if _hx(request):
        here = request.headers.get("hx-current-url")
    else:  # back to the page after login; a POST's target is no page
        here = str(request.url) if request.method == "GET" else None
    parts = urlsplit(here or "")
    back = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    target = f"{base}/login?{urlencode({'next': back})}"
    response: Response
    if _hx(request):
        response = Response(status_code=401, headers={"HX-Redirect": target})
    else:
        response = RedirectResponse(target, status_code=303)
    if request.cookies.get(COOKIE):  # a stale or revoked token: forget it
        response.delete_cookie(COOKIE, path=base or "/", httponly=True, samesite="strict")
    return response


def _failure(exc: Exception) -> DashboardError:
    """What an action's error says on the page: its kind and message, never a traceback."""
    if isinstance(exc, DashboardError):
        return exc
    if isinstance(exc, Problem):
        return DashboardError(exc.status, exc.title, exc.detail or "")
    status, slug = status_of(exc)
    if isinstance(exc, PermissionError):
        status = 403
    if status >= 500 and slug == "internal":
        log.error("dashboard action failed", exc_info=exc)
        return DashboardError(500, "Internal error", "the node logged the cause")
    title = re.sub(r"(?<!^)(?=[A-Z])", " ", type(exc).__name__).capitalize()
    return DashboardError(status, title, str(exc))


def _act(request: Request, do: Callable[[Principal], str]) -> HTMLResponse:
    """An operator's action from the dashboard: CSRF and role checks, then `do`, whose
    answer is the message shown; the lists on the page reload after it."""
    access.check_action(request)
    who = access.need(request, Role.OPERATOR)
    try:
        done = do(who)
    except Exception as exc:
        raise _failure(exc) from None
    return _flash(request, done, "ok", **REFRESH)


def _viewer(request: Request) -> Principal:
    return access.need(request, Role.VIEWER)


Viewer = Annotated[Principal, Depends(_viewer)]


# -- login ------------------------------------------------------------------------------------
@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    auth = request.app.state.control.auth
    return _html(
        request,
        "login.html",
        None,
        next=access.safe_next(next, _base(request)),
        error="",
        anonymous=None if auth.anonymous is None else str(auth.anonymous),
    )


@router.post("/login")
def login(request: Request, fields: Form) -> Response:
    access.check_form_origin(request)
    auth = request.app.state.control.auth
    base = _base(request)
    target = access.safe_next(fields.get("next"), base)
    token = fields.get("token", "").strip()
    if not auth.required:
        return RedirectResponse(target, status_code=303)
    try:
        if not token or any(c.isspace() or c in ';,"\\' for c in token):
            raise Problem(401, "Unauthorized", "the token is not valid for this node")
        auth.principal(f"Bearer {token}")
    except Problem:
        return _html(
            request,
            "login.html",
            None,
            401,
            next=target,
            error="That token is not valid for this node.",
            anonymous=None,
        )
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        path=base or "/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    access.check_form_origin(request)
    base = _base(request)
    response = RedirectResponse(f"{base}/login", status_code=303)
    response.delete_cookie(COOKIE, path=base or "/", httponly=True, samesite="strict")
    return response


# -- runs -------------------------------------------------------------------------------------
def _runs(
    ctl: Control, status: str | None, workflow: str | None, cursor: str | None, limit: int
) -> dict:
    status = (status or "").strip().upper() or None
    workflow = (workflow or "").strip() or None
    cursor = (cursor or "").strip() or None
    if status is not None and status not in STATUSES:
        raise DashboardError(422, "Unknown status", f"{status!r} is not one of {STATUSES}")
    found = ctl.app.store.list_runs([status] if status else None, workflow, limit + 1, cursor)
    more = len(found) > limit
    found = found[:limit]
    query: dict[str, Any] = {k: v for k, v in (("status", status), ("workflow", workflow)) if v}
    if limit != PAGE:
        query["limit"] = limit
    return {
        "runs": [(run_view(r), r) for r in found],
        "status": status,
        "workflow": workflow,
        "cursor": cursor,
        "query": urlencode({**query, **({"cursor": cursor} if cursor else {})}),
        "newest_query": urlencode(query),
        "older_query": urlencode({**query, "cursor": found[-1].run_id}) if more else None,
        "now": time.time(),
    }


StatusQ = Annotated[str | None, Query(max_length=40)]
TextQ = Annotated[str | None, Query(max_length=200)]
LimitQ = Annotated[int, Query(ge=1, le=500)]


@router.get("/")
def runs_page(
    request: Request,
    ctl: Ctl,
    who: Viewer,
    status: StatusQ = None,
    workflow: TextQ = None,
    cursor: TextQ = None,
    limit: LimitQ = PAGE,
) -> Response:
    served = sorted({name for name, _ in ctl.app.registry.served()})
    return _html(
        request,
        "runs.html",
        who,
        nav="runs",
        statuses=STATUSES,
        workflows=served,
        **_runs(ctl, status, workflow, cursor, limit),
    )


@router.get("/partials/runs")
def runs_partial(
    request: Request,
    ctl: Ctl,
    who: Viewer,
    status: StatusQ = None,
    workflow: TextQ = None,
    cursor: TextQ = None,
    limit: LimitQ = PAGE,
) -> Response:
    return _html(request, "_runs.html", who, **_runs(ctl, status, workflow, cursor, limit))


def _run(ctl: Control, run_id: str) -> dict[str, Any]:
    record = ctl.app.get_run(run_id)
    if record is None:
        raise DashboardError(404, "Run not found", f"there is no run {run_id}")
    steps = ctl.app.steps(run_id)
    bars = render.step_bars(steps, record.started_at or record.created_at, record.finished_at)
    rows = [
        {"step": step_view(s), "bar": bar, "retries": max(0, s.attempts - 1)}
        for s, bar in zip(steps, bars, strict=True)
    ]
    events = ctl.app.store.list_events(run_id, None, None, 0, 200)
    status = RunStatus(record.status)
    return {
        "run": run_view(record),
        "rows": rows,
        "compensations": [r for r in rows if r["step"].kind == "compensation"],
        "approvals": [approval_view(a) for a in ctl.app.approvals(None, run_id, 100)],
        "events": [event_view(e) for e in events],
        "more_events": len(events) >= 200,
        "terminal": status in TERMINAL,
        "can_cancel": status not in TERMINAL and status != RunStatus.COMPENSATING,
        "can_redrive": status in REDRIVABLE,
        "seconds": None
        if record.finished_at is None
        else max(0.0, record.finished_at - record.created_at),
    }


@router.get("/runs/{run_id}")
def run_page(request: Request, run_id: str, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "run.html", who, nav="runs", **_run(ctl, run_id))


@router.get("/partials/runs/{run_id}")
def run_partial(request: Request, run_id: str, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "_run.html", who, **_run(ctl, run_id))


@router.post("/actions/runs/{run_id}/cancel")
def cancel(request: Request, run_id: str, ctl: Ctl) -> Response:
    def do(who: Principal) -> str:
        after = ctl.app.cancel(run_id)
        log.info("run cancelled from the dashboard", run_id=run_id, by=who.name)
        return f"Run {run_id} is {after.status}."

    return _act(request, do)


@router.post("/actions/runs/{run_id}/redrive")
def redrive(request: Request, run_id: str, ctl: Ctl) -> Response:
    def do(who: Principal) -> str:
        ctl.app.redrive(run_id)
        log.info("run redriven from the dashboard", run_id=run_id, by=who.name)
        return f"Run {run_id} was sent back to its queue."

    return _act(request, do)


# -- approvals --------------------------------------------------------------------------------
def _approvals(ctl: Control, run_id: str | None) -> dict[str, Any]:
    run_id = (run_id or "").strip() or None
    found = ctl.app.approvals("PENDING", run_id, 500)
    return {"approvals": [approval_view(a) for a in found], "run_id": run_id}


@router.get("/approvals")
def approvals_page(request: Request, ctl: Ctl, who: Viewer, run_id: TextQ = None) -> Response:
    return _html(request, "approvals.html", who, nav="approvals", **_approvals(ctl, run_id))


@router.get("/partials/approvals")
def approvals_partial(request: Request, ctl: Ctl, who: Viewer, run_id: TextQ = None) -> Response:
    return _html(request, "_approvals.html", who, **_approvals(ctl, run_id))


@router.post("/actions/approvals/{run_id}/{name}")
def decide(request: Request, run_id: str, name: str, ctl: Ctl, fields: Form) -> Response:
    def do(who: Principal) -> str:
        decision = fields.get("decision", "")
        if decision not in ("approve", "reject"):
            raise DashboardError(422, "No decision", "choose Approve or Reject")
        comment = fields.get("comment", "").strip() or None
        if comment is not None and len(comment) > 10_000:
            raise DashboardError(422, "Comment too long", "at most 10,000 characters")
        by = fields.get("by", "").strip()[:200] or who.name
        decided = ctl.app.decide(run_id, name, decision == "approve", by, comment)
        return f"{decided.status.capitalize()}: {name!r} of run {run_id} (by {by})."

    return _act(request, do)


# -- dead letters -----------------------------------------------------------------------------
def _dead(ctl: Control) -> dict[str, Any]:
    found = ctl.app.store.list_runs([RunStatus.DEAD], None, 200)
    return {"runs": [run_view(r) for r in found]}


@router.get("/dlq")
def dlq_page(request: Request, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "dlq.html", who, nav="dlq", **_dead(ctl))


@router.get("/partials/dlq")
def dlq_partial(request: Request, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "_dlq.html", who, **_dead(ctl))


@router.post("/actions/dlq/{run_id}/redrive")
def redrive_dead(request: Request, run_id: str, ctl: Ctl) -> Response:
    def do(who: Principal) -> str:
        run = ctl.app.get_run(run_id)
        if run is None:
            raise RunNotFound(run_id)
        if run.status != RunStatus.DEAD:
            raise DashboardError(
                409, "Not dead", f"run {run_id} is {run.status}, not in the dead-letter queue"
            )
        ctl.app.redrive(run_id)
        log.info("run redriven from the dashboard", run_id=run_id, by=who.name)
        return f"Run {run_id} was redriven."

    return _act(request, do)


# -- schedules --------------------------------------------------------------------------------
def _schedules(ctl: Control) -> dict[str, Any]:
    return {"schedules": [schedule_view(s) for s in ctl.app.schedules()]}


@router.get("/schedules")
def schedules_page(request: Request, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "schedules.html", who, nav="schedules", **_schedules(ctl))


@router.get("/partials/schedules")
def schedules_partial(request: Request, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "_schedules.html", who, **_schedules(ctl))


@router.post("/actions/schedules/{name}/{op}")
def schedule_action(request: Request, name: str, op: str, ctl: Ctl) -> Response:
    def do(who: Principal) -> str:
        if op == "pause":
            ctl.app.pause_schedule(name)
            return f"Schedule {name!r} is paused."
        if op == "resume":
            ctl.app.resume_schedule(name)
            return f"Schedule {name!r} is resumed."
        if op == "trigger":
            handle = ctl.app.trigger_schedule(name)
            return f"Schedule {name!r} started run {handle.id}."
        raise DashboardError(404, "Unknown action", f"schedules cannot {op!r}")

    return _act(request, do)


# -- agents -----------------------------------------------------------------------------------
def _agents(ctl: Control) -> dict[str, Any]:
    orch = getattr(ctl.node, "orchestrator", None)
    return {"hosted": orch is not None, "agents": [] if orch is None else orch.ps()}


@router.get("/agents")
def agents_page(request: Request, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "agents.html", who, nav="agents", **_agents(ctl))


@router.get("/partials/agents")
def agents_partial(request: Request, ctl: Ctl, who: Viewer) -> Response:
    return _html(request, "_agents.html", who, **_agents(ctl))


@router.post("/actions/agents/{name}/{op}")
def agent_action(request: Request, name: str, op: str, ctl: Ctl) -> Response:
    def do(who: Principal) -> str:
        if op not in ("start", "stop", "restart"):
            raise DashboardError(404, "Unknown action", f"agents cannot {op!r}")
        orch = ctl.orchestrator()
        log.info("agent action from the dashboard", agent=name, op=op, by=who.name)
        if name == agents_api.SELF and op in ("stop", "restart"):
            # it serves this very request: act once the answer is on its way
            orch.status(name)
            threading.Thread(target=getattr(orch, op), args=(name,), daemon=True).start()
            return f"Agent {name!r}: {op} accepted."
        state = getattr(orch, op)(name)
        return f"Agent {name!r}: {op} → {state}."

    return _act(request, do)


# -- analytics --------------------------------------------------------------------------------
@router.get("/analytics")
def analytics_page(
    request: Request,
    ctl: Ctl,
    who: Viewer,
    window: Annotated[str, Query(max_length=10)] = "1h",
    workflow: TextQ = None,
) -> Response:
    if window not in WINDOWS:
        raise DashboardError(422, "Unknown window", f"choose one of {', '.join(WINDOWS)}")
    seconds, buckets, long = WINDOWS[window]
    workflow = (workflow or "").strip() or None
    until = time.time()
    since = until - seconds
    found = summarize(ctl.app.store, since, until, workflow, buckets)
    per_flow = render.timelines(
        ctl.app.store.finished_runs(since, until, workflow), since, until, buckets
    )
    flows = [
        {**wf, "chart": render.chart(per_flow.get(wf["workflow"], []), long=long)}
        for wf in found["workflows"]
    ]
    return _html(
        request,
        "analytics.html",
        who,
        nav="analytics",
        window=window,
        windows=list(WINDOWS),
        workflow=workflow,
        since=since,
        until=until,
        overall=render.chart(found["timeline"], long=long),
        flows=flows,
        charted=MAX_CHARTS,
        workflow_q=("&" + urlencode({"workflow": workflow})) if workflow else "",
    )
