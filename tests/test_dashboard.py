"""The dashboard over real loopback HTTP: pages, roles, login cookie, CSRF, errors, escaping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

import baton
from baton.core.roles import Role
from baton.server.api import create_api
from conftest import wait_until
from serverkit import serving

FAST = baton.Retry(max_attempts=2, initial=0.01, jitter=False)
TOKENS = [
    SimpleNamespace(name="vic", token="viewer-token-1", role=Role.VIEWER),
    SimpleNamespace(name="ann", token="operator-token-1", role=Role.OPERATOR),
]
HX = {"HX-Request": "true"}


def make_app(path: Path) -> baton.App:
    app = baton.App(path / "baton.db", poll_interval=0.05)

    @app.step(name="add")
    def add(x: int) -> int:
        return x + 1

    @app.step(name="unbook")
    def unbook(trip: str) -> None:
        return None

    @app.step(name="book", compensate="unbook")
    def book(trip: str) -> str:
        return f"B-{trip}"

    @app.step(name="pay", retry=FAST)
    def pay(trip: str) -> None:
        raise RuntimeError(f"card declined for {trip}")

    @app.step(name="ship", retry=FAST)
    def ship(order: str) -> None:
        raise RuntimeError(f"carrier down for {order}")

    @app.workflow(name="approve-me")
    def approve_me(order: Any) -> dict:
        n = add(1)
        decision = baton.wait_for_approval("manager", timeout=600)
        return {"n": n, "approved": decision.approved}

    @app.workflow(name="trip")
    def trip(name: str) -> str:
        book(name)
        pay(name)
        return "booked"

    @app.workflow(name="fulfil")
    def fulfil(order: str) -> str:
        ship(order)
        return "shipped"

    @app.workflow(name="quick")
    def quick(x: int) -> int:
        return add(x)

    return app


@pytest.fixture
def app(tmp_path: Path) -> Iterator[baton.App]:
    app = make_app(tmp_path)
    yield app
    app.shutdown(timeout=5)


def pending(app: baton.App, run_id: str) -> Any:
    return wait_until(lambda: app.approvals("PENDING", run_id), 10, "the approval")


def finished(app: baton.App, run_id: str) -> str:
    return wait_until(
        lambda: (r := app.get_run(run_id)) is not None and r.finished_at is not None and r.status,
        15,
        f"run {run_id} to end",
    )


def test_every_page_renders_with_its_content(app: baton.App) -> None:
    waiting = app.start("approve-me", {"order": "o-1"})
    pending(app, waiting.id)
    saga = app.start("trip", "rome")
    dead = app.start("fulfil", "o-9")
    ok = app.start("quick", 41)
    assert ok.result(timeout=10) == 42
    assert finished(app, saga.id) == "COMPENSATED"
    assert finished(app, dead.id) == "DEAD"
    app.schedule("nightly", "quick", 1, cron="0 3 * * *")

    with serving(create_api(app)) as url, httpx.Client(base_url=url, timeout=30) as http:
        page = http.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        for run_id in (waiting.id, saga.id, dead.id, ok.id):
            assert run_id in page.text
        assert 'hx-trigger="every 2s"' in page.text  # the table refreshes itself
        assert "/static/htmx.min.js" in page.text
        assert page.headers["x-frame-options"] == "DENY"

        only = http.get("/", params={"status": "DEAD"})
        assert dead.id in only.text and waiting.id not in only.text
        by_flow = http.get("/partials/runs", params={"workflow": "trip"})
        assert saga.id in by_flow.text and ok.id not in by_flow.text
        first = http.get("/", params={"limit": 2})
        older = re.search(r'href="/\?limit=2&amp;cursor=([^"]+)">Older', first.text)
        assert older, "a page of 2 of 4 runs links to the older ones"
        second = http.get("/", params={"limit": 2, "cursor": older.group(1)})
        shown = lambda text: set(re.findall(r'href="/runs/([^"]+)"', text))  # noqa: E731
        assert len(shown(first.text)) == 2 and len(shown(second.text)) == 2
        assert not shown(first.text) & shown(second.text)

        detail = http.get(f"/runs/{waiting.id}")
        assert detail.status_code == 200
        for text in ("approve-me", "WAITING", "add", "approval", "manager", "Events"):
            assert text in detail.text
        assert ">Cancel</button>" in detail.text  # admin may cancel a waiting run
        assert "every 2s" in detail.text  # a live run's page polls

        compensated = http.get(f"/runs/{saga.id}").text
        assert "COMPENSATED" in compensated and "Compensation log" in compensated
        assert "unbook" in compensated and "card declined for rome" in compensated
        assert "(1 retry)" in compensated  # pay ran twice
        assert "every 2s" not in compensated  # a finished run's page stops polling

        assert ">Redrive</button>" in http.get(f"/runs/{dead.id}").text

        approvals = http.get("/approvals").text
        assert waiting.id in approvals and ">Approve</button>" in approvals
        assert ">Reject</button>" in approvals and 'name="comment"' in approvals

        dlq = http.get("/dlq").text
        assert dead.id in dlq and "carrier down for o-9" in dlq and ">Redrive</button>" in dlq

        schedules = http.get("/schedules").text
        assert (
            "nightly" in schedules and "0 3 * * *" in schedules and ">Pause</button>" in schedules
        )

        agents = http.get("/agents")
        assert agents.status_code == 200 and "No agents here" in agents.text

        for window in ("1h", "24h", "7d"):
            charts = http.get("/analytics", params={"window": window})
            assert charts.status_code == 200
            assert "<svg" in charts.text and '<rect class="ok"' in charts.text
            for text in ("p50", "p95", "p99", "Success rate", "quick", "trip", "add"):
                assert text in charts.text
        assert http.get("/analytics", params={"window": "3y"}).status_code == 422

        missing = http.get("/runs/no-such-run")
        assert missing.status_code == 404 and "Run not found" in missing.text
        assert http.get("/static/baton.css").status_code == 200

        # a dashboard action, then its effect: pause the schedule, and resume it
        paused = http.post("/actions/schedules/nightly/pause", headers=HX)
        assert paused.status_code == 200 and "paused" in paused.text
        assert paused.headers["hx-trigger"] == "baton-refresh"
        assert ">Resume</button>" in http.get("/partials/schedules").text
        assert http.post("/actions/schedules/nightly/resume", headers=HX).status_code == 200
        assert app.schedules()[0].paused is False


def test_viewer_sees_no_buttons_and_cannot_act(app: baton.App) -> None:
    run = app.start("approve-me", {"order": "o-2"})
    pending(app, run.id)
    api = create_api(app, tokens=TOKENS)
    with serving(api) as url:
        viewer = httpx.Client(
            base_url=url, headers={"Authorization": "Bearer viewer-token-1"}, timeout=30
        )
        operator = httpx.Client(
            base_url=url, headers={"Authorization": "Bearer operator-token-1"}, timeout=30
        )
        with viewer, operator:
            for path in ("/approvals", f"/runs/{run.id}", "/schedules", "/dlq"):
                page = viewer.get(path)
                assert page.status_code == 200, path
                assert "hx-post" not in page.text, path
            assert run.id in viewer.get("/approvals").text
            assert "vic · viewer" in viewer.get("/").text

            actions = [
                f"/actions/approvals/{run.id}/manager",
                f"/actions/runs/{run.id}/cancel",
                f"/actions/runs/{run.id}/redrive",
                f"/actions/dlq/{run.id}/redrive",
                "/actions/schedules/nope/pause",
                "/actions/agents/nope/stop",
            ]
            for path in actions:
                refused = viewer.post(path, data={"decision": "approve"}, headers=HX)
                assert refused.status_code == 403, path
                assert "needs the operator role" in refused.text
                assert refused.headers["hx-retarget"] == "#flash"
            assert app.approvals("PENDING", run.id), "nothing was decided"
            assert app.get_run(run.id).status == "WAITING"

            page = operator.get("/approvals").text
            assert ">Approve</button>" in page and "hx-post" in page
            done = operator.post(
                f"/actions/approvals/{run.id}/manager",
                data={"decision": "reject", "comment": "not this one"},
                headers=HX,
            )
            assert done.status_code == 200 and "Rejected" in done.text
            assert app.handle(run.id).result(timeout=10) == {"n": 2, "approved": False}
            decided = app.approvals(None, run.id)[0]
            assert (decided.decided_by, decided.comment) == ("ann", "not this one")


def test_login_cookie_flow_and_csrf(app: baton.App) -> None:
    run = app.start("approve-me", {"order": "o-3"})
    pending(app, run.id)
    with serving(create_api(app, tokens=TOKENS)) as url:
        origin = {"Origin": url}
        with httpx.Client(base_url=url, timeout=30) as browser:
            gone = browser.get(f"/approvals?run_id={run.id}")
            assert gone.status_code == 303
            assert gone.headers["location"].startswith("/login?next=%2Fapprovals")
            assert (
                browser.get("/partials/runs", headers=HX)
                .headers["hx-redirect"]
                .startswith("/login")
            )
            form = browser.get("/login")
            assert form.status_code == 200 and 'type="password" name="token"' in form.text

            bad = browser.post("/login", data={"token": "wrong", "next": "/"}, headers=origin)
            assert bad.status_code == 401 and "not valid" in bad.text
            assert "baton_token" not in browser.cookies
            # a login form posted from another site (or with no origin at all) is refused
            forged = {"token": "operator-token-1"}
            other = {"Origin": "http://evil.example"}
            assert browser.post("/login", data=forged, headers=other).status_code == 403
            assert browser.post("/login", data=forged).status_code == 403

            ok = browser.post(
                "/login",
                data={"token": "operator-token-1", "next": "/approvals"},
                headers=origin,
            )
            assert ok.status_code == 303 and ok.headers["location"] == "/approvals"
            cookie = ok.headers["set-cookie"]
            assert cookie.startswith("baton_token=operator-token-1")
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
            assert "Secure" not in cookie  # plain HTTP on loopback
            away = browser.post(
                "/login",
                data={"token": "operator-token-1", "next": "//evil.example/"},
                headers=origin,
            )
            assert away.headers["location"] == "/"
            tabbed = browser.post(
                "/login",
                data={"token": "operator-token-1", "next": "/\t/evil.example"},
                headers=origin,
            )
            assert tabbed.headers["location"] == "/"  # browsers drop the tab: //evil.example

            page = browser.get("/approvals")
            assert page.status_code == 200 and run.id in page.text and "ann · operator" in page.text
            assert "Log out" in page.text
            # the cookie is for the dashboard only: the REST API still wants a bearer header
            assert browser.get("/api/v1/runs").status_code == 401

            action = f"/actions/approvals/{run.id}/manager"
            body = {"decision": "approve"}
            no_hx = browser.post(action, data=body, headers=origin)
            assert no_hx.status_code == 403 and "HX-Request" in no_hx.text
            cross = browser.post(action, data=body, headers={**HX, "Origin": "http://evil.example"})
            assert cross.status_code == 403 and "another site" in cross.text
            assert app.approvals("PENDING", run.id), "no forged request decided it"

            done = browser.post(action, data=body, headers={**HX, **origin})
            assert done.status_code == 200 and "Approved" in done.text
            assert app.handle(run.id).result(timeout=10) == {"n": 2, "approved": True}

            out = browser.post("/logout", headers=origin)
            assert out.status_code == 303 and out.headers["location"] == "/login"
            assert "baton_token" not in browser.cookies
            assert browser.get("/").status_code == 303

        # a revoked (unknown) token in the cookie sends the browser back to log in
        with httpx.Client(base_url=url, timeout=30, cookies={"baton_token": "old"}) as stale:
            sent_back = stale.get("/")
            assert sent_back.status_code == 303 and "/login" in sent_back.headers["location"]
            assert 'baton_token=""' in sent_back.headers["set-cookie"]


def test_login_page_without_tokens_says_none_is_needed(app: baton.App) -> None:
    with serving(create_api(app)) as url, httpx.Client(base_url=url, timeout=30) as http:
        page = http.get("/login")
        assert page.status_code == 200 and "takes no tokens" in page.text


def test_action_errors_show_as_messages(app: baton.App) -> None:
    run = app.start("approve-me", {"order": "o-4"})
    pending(app, run.id)
    app.approve(run.id, "manager", by="someone")
    app.handle(run.id).result(timeout=10)
    with serving(create_api(app)) as url, httpx.Client(base_url=url, timeout=30) as http:
        again = http.post(
            f"/actions/approvals/{run.id}/manager", data={"decision": "approve"}, headers=HX
        )
        assert again.status_code == 409
        assert again.headers["hx-retarget"] == "#flash"
        assert 'class="flash bad"' in again.text and "Approval closed" in again.text
        assert "already closed" in again.text and "Traceback" not in again.text

        unknown = http.post("/actions/runs/no-such-run/cancel", headers=HX)
        assert unknown.status_code == 404 and "no-such-run" in unknown.text
        undecided = http.post(f"/actions/approvals/{run.id}/manager", headers=HX)
        assert undecided.status_code == 422 and "choose Approve or Reject" in undecided.text
        not_dead = http.post(f"/actions/dlq/{run.id}/redrive", headers=HX)
        assert not_dead.status_code == 409 and "not in the dead-letter queue" in not_dead.text
        no_agents = http.post("/actions/agents/worker/restart", headers=HX)
        assert no_agents.status_code == 503 and "No agents here" in no_agents.text
        # without htmx (a plain form post) the refusal is a whole page, not a fragment
        page = http.post(f"/actions/runs/{run.id}/cancel")
        assert page.status_code == 403 and "<html" in page.text and "Forbidden" in page.text


def test_run_input_is_escaped(app: baton.App) -> None:
    evil = "<script>alert('x')</script>"
    run = app.start("approve-me", {"note": evil}, correlation_id="<b>c</b>")
    pending(app, run.id)
    with serving(create_api(app)) as url, httpx.Client(base_url=url, timeout=30) as http:
        for path in (f"/runs/{run.id}", f"/partials/runs/{run.id}"):
            page = http.get(path).text
            assert "<script>alert" not in page and "<b>c</b>" not in page
            assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
            assert "&lt;b&gt;c&lt;/b&gt;" in page
        assert "/static/htmx.min.js" in http.get(f"/runs/{run.id}").text
