"""The REST API of /api/v1 over real HTTP on loopback: every route's happy path with real
workflows (on SQLite and PostgreSQL), and bad input answered with problem details."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from apikit import PROBLEM, TOKENS, Served, agents_node, assert_problem, served
from baton.core.roles import Role
from conftest import wait_until

FINISHED = {"SUCCEEDED", "FAILED", "CANCELLED", "DEAD", "COMPENSATED"}


def _start(s: Served, workflow: str, **body: Any) -> dict:
    r = s.operator.post("/api/v1/runs", json={"workflow": workflow, **body})
    assert r.status_code == 201, r.text
    return r.json()


def _run(s: Served, run_id: str) -> dict:
    r = s.viewer.get(f"/api/v1/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()


def _until(s: Served, run_id: str, *statuses: str, timeout: float = 20) -> dict:
    found: dict = {}

    def reached() -> bool:
        found.update(_run(s, run_id))
        return found["status"] in statuses

    wait_until(reached, timeout, f"run {run_id} to be {'/'.join(statuses)}")
    return found


def _all_runs(s: Served, **params: Any) -> list[dict]:
    r = s.viewer.get("/api/v1/runs", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return r.json()["items"]


# -- runs: start, idempotency, get, steps, list -------------------------------------------
def test_start_get_steps_and_idempotency(store_path):
    with served(store_path) as s:
        body = {"workflow": "greet", "input": "ann", "idempotency_key": "order-1"}
        first = s.operator.post("/api/v1/runs", json={**body, "correlation_id": "corr-1"})
        assert first.status_code == 201, first.text
        run = first.json()
        run_id = run["run_id"]
        assert first.headers["location"] == f"/api/v1/runs/{run_id}"
        assert run["workflow"] == "greet" and run["version"] == "1"
        assert run["idempotency_key"] == "order-1" and run["correlation_id"] == "corr-1"
        assert run["input"] == {"args": ["ann"], "kwargs": {}}
        assert run["status"] in {"ENQUEUED", "RUNNING", "SUCCEEDED"}

        again = s.operator.post("/api/v1/runs", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["run_id"] == run_id
        assert again.headers["location"] == f"/api/v1/runs/{run_id}"

        done = _until(s, run_id, "SUCCEEDED")
        assert done["output"] == "HELLO ANN"
        assert done["finished_at"] and done["started_at"] and done["duration_ms"] >= 0
        assert s.viewer.get(first.headers["location"]).json()["run_id"] == run_id
        assert s.calls["hello"] == 1  # the idempotent start executed nothing again

        steps = s.viewer.get(f"/api/v1/runs/{run_id}/steps")
        assert steps.status_code == 200, steps.text
        assert [(x["seq"], x["name"], x["status"]) for x in steps.json()] == [
            (1, "hello", "SUCCEEDED"),
            (2, "shout", "SUCCEEDED"),
        ]
        assert [x["output"] for x in steps.json()] == ["hello ann", "HELLO ANN"]

        by_kwargs = _start(s, "greet", kwargs={"name": "bo"}, priority=3, queue="default")
        assert by_kwargs["priority"] == 3
        assert _until(s, by_kwargs["run_id"], "SUCCEEDED")["output"] == "HELLO BO"
        by_args = _start(s, "greet", args=["cy"])
        assert _until(s, by_args["run_id"], "SUCCEEDED")["output"] == "HELLO CY"
        by_default = _start(s, "greet")
        assert _until(s, by_default["run_id"], "SUCCEEDED")["output"] == "HELLO WORLD"


def test_list_filters_and_cursor_pagination(store_path):
    with served(store_path) as s:
        greets = [_start(s, "greet", input=f"p{i}")["run_id"] for i in range(7)]
        naps = [_start(s, "napper")["run_id"] for _ in range(2)]
        for run_id in greets:
            _until(s, run_id, "SUCCEEDED")
        for run_id in naps:
            _until(s, run_id, "WAITING")
        cancelled = s.operator.post(f"/api/v1/runs/{naps[0]}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "CANCELLED"

        everything = _all_runs(s)
        ids = [r["run_id"] for r in everything]
        assert sorted(ids, reverse=True) == ids  # newest first
        assert set(ids) == set(greets) | set(naps)

        for params, expected in (
            ({}, ids),
            ({"workflow": "greet"}, sorted(greets, reverse=True)),
            ({"status": "SUCCEEDED"}, sorted(greets, reverse=True)),
        ):
            pages, cursor = [], None
            while True:
                query = {**params, "limit": 3, **({"cursor": cursor} if cursor else {})}
                r = s.viewer.get("/api/v1/runs", params=query)
                assert r.status_code == 200, r.text
                page = r.json()
                assert len(page["items"]) <= 3
                pages.append([x["run_id"] for x in page["items"]])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
                assert cursor == pages[-1][-1]
            walked = [run_id for page in pages for run_id in page]
            assert walked == expected, params  # no duplicates, no gaps, in order
            assert all(len(p) == 3 for p in pages[:-1])

        def statuses(**params: Any) -> Counter:
            return Counter(r["status"] for r in _all_runs(s, **params))

        assert statuses(workflow="napper") == {"CANCELLED": 1, "WAITING": 1}
        assert statuses(status="cancelled,waiting") == {"CANCELLED": 1, "WAITING": 1}
        assert statuses(status=["CANCELLED", "SUCCEEDED"]) == {"CANCELLED": 1, "SUCCEEDED": 7}
        assert statuses(workflow="greet", status="WAITING") == {}
        assert _all_runs(s, workflow="no-such-workflow") == []


# -- the dead-letter queue, redrive, fork, cancel --------------------------------------------
def test_dead_letters_redrive_and_fork(store_path):
    with served(store_path) as s:
        dead = [_start(s, "flaky", input=n)["run_id"] for n in (3, 4)]
        for run_id in dead:
            run = _until(s, run_id, "DEAD")
            assert run["error"]["type"] == "RuntimeError" or "RuntimeError" in json.dumps(run)
        dlq = s.viewer.get("/api/v1/dlq")
        assert dlq.status_code == 200, dlq.text
        assert {r["run_id"] for r in dlq.json()} == set(dead)
        assert {r["status"] for r in dlq.json()} == {"DEAD"}
        assert s.viewer.get("/api/v1/dlq", params={"workflow": "greet"}).json() == []
        steps = s.viewer.get(f"/api/v1/runs/{dead[0]}/steps").json()
        assert [(x["name"], x["status"], x["attempts"]) for x in steps] == [("wobbly", "FAILED", 2)]

        s.switch["fail"] = False
        redriven = s.operator.post(f"/api/v1/dlq/{dead[0]}/redrive")
        assert redriven.status_code == 200, redriven.text
        assert redriven.json()["run_id"] == dead[0]
        assert redriven.json()["status"] != "DEAD"
        assert _until(s, dead[0], "SUCCEEDED")["output"] == 6
        again = s.operator.post(f"/api/v1/dlq/{dead[0]}/redrive")  # not in the DLQ any more
        assert_problem(again, 409, "invalid-state")

        other = s.operator.post(f"/api/v1/runs/{dead[1]}/redrive")
        assert other.status_code == 200, other.text
        assert other.json()["run_id"] == dead[1]
        assert _until(s, dead[1], "SUCCEEDED")["output"] == 8
        assert s.viewer.get("/api/v1/dlq").json() == []

        source = _start(s, "greet", input="ann", correlation_id="c-fork")["run_id"]
        _until(s, source, "SUCCEEDED")
        hellos = s.calls["hello"]
        fork = s.operator.post(f"/api/v1/runs/{source}/fork", json={"from_step": 2})
        assert fork.status_code == 201, fork.text
        fork_id = fork.json()["run_id"]
        assert fork_id != source
        assert fork.headers["location"] == f"/api/v1/runs/{fork_id}"
        assert fork.json()["forked_from"] == source
        assert fork.json()["correlation_id"] == "c-fork"
        assert _until(s, fork_id, "SUCCEEDED")["output"] == "HELLO ANN"
        assert s.calls["hello"] == hellos  # step 1 was reused, not executed
        assert len(s.viewer.get(f"/api/v1/runs/{fork_id}/steps").json()) == 2

        refork = s.operator.post(
            f"/api/v1/runs/{source}/fork", json={"from_step": 1, "input": {"args": ["dee"]}}
        )
        assert refork.status_code == 201, refork.text
        assert _until(s, refork.json()["run_id"], "SUCCEEDED")["output"] == "HELLO DEE"
        assert _run(s, source)["output"] == "HELLO ANN"  # the source is left as it was


def test_cancel_a_waiting_run(store_path):
    with served(store_path) as s:
        run_id = _start(s, "napper")["run_id"]
        _until(s, run_id, "WAITING")
        cancelled = s.operator.post(f"/api/v1/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["run_id"] == run_id
        assert cancelled.json()["status"] == "CANCELLED"
        assert _run(s, run_id)["status"] == "CANCELLED"
        assert_problem(s.operator.post(f"/api/v1/runs/{run_id}/cancel"), 409, "invalid-state")


# -- signals and approvals -------------------------------------------------------------------
def test_signal_and_approval_finish_their_runs(store_path):
    with served(store_path) as s:
        waiting = _start(s, "waiter")["run_id"]
        _until(s, waiting, "WAITING")
        sent = s.operator.post(
            f"/api/v1/runs/{waiting}/signals", json={"name": "go", "payload": {"x": [1, 2]}}
        )
        assert sent.status_code == 202, sent.text
        assert sent.json()["run_id"] == waiting and sent.json()["name"] == "go"
        assert sent.json()["signal_id"]
        assert _until(s, waiting, "SUCCEEDED")["output"] == {"got": {"x": [1, 2]}}

        expense = _start(s, "expense", input=120)["run_id"]
        _until(s, expense, "WAITING")
        pending = s.viewer.get("/api/v1/approvals")
        assert pending.status_code == 200, pending.text
        [approval] = pending.json()
        assert approval["run_id"] == expense and approval["name"] == "manager"
        assert approval["status"] == "PENDING" and approval["workflow"] == "expense"
        assert approval["deadline_at"] and approval["requested_at"]
        by_run = s.viewer.get("/api/v1/approvals", params={"run_id": expense}).json()
        assert [a["run_id"] for a in by_run] == [expense]
        assert s.viewer.get("/api/v1/approvals", params={"run_id": waiting}).json() == []

        decided = s.operator.post(
            f"/api/v1/runs/{expense}/approvals/manager",
            json={"approved": True, "comment": "fine"},
        )
        assert decided.status_code == 200, decided.text
        assert decided.json()["status"] == "APPROVED"
        assert decided.json()["decided_by"] == TOKENS[Role.OPERATOR].name  # the token's name
        assert decided.json()["comment"] == "fine" and decided.json()["decided_at"]
        done = _until(s, expense, "SUCCEEDED")
        assert done["output"] == {"amount": 120, "approved": True, "by": "olga"}

        twice = s.operator.post(
            f"/api/v1/runs/{expense}/approvals/manager", json={"approved": False}
        )
        assert_problem(twice, 409, "approval-closed")
        assert s.viewer.get("/api/v1/approvals").json() == []
        everything = s.viewer.get("/api/v1/approvals", params={"status": "ALL"}).json()
        assert [(a["run_id"], a["status"], a["decided_by"]) for a in everything] == [
            (expense, "APPROVED", "olga")
        ]

        rejected = _start(s, "expense", input=9)["run_id"]
        _until(s, rejected, "WAITING")
        stranger = s.operator.post(
            f"/api/v1/runs/{rejected}/approvals/manager", json={"approved": True, "by": "zed"}
        )
        assert_problem(stranger, 403, "not-an-assignee")
        admin = s.admin.post(f"/api/v1/runs/{rejected}/approvals/manager", json={"approved": True})
        assert_problem(admin, 403, "not-an-assignee")  # "ada" is no assignee either
        by_someone = s.operator.post(
            f"/api/v1/runs/{rejected}/approvals/manager", json={"approved": False, "by": "ann"}
        )
        assert by_someone.status_code == 200, by_someone.text
        assert by_someone.json()["decided_by"] == "ann"
        assert _until(s, rejected, "SUCCEEDED")["output"]["approved"] is False


# -- schedules -------------------------------------------------------------------------------
def test_schedules_pause_resume_trigger(store_path):
    with served(store_path) as s:
        listed = s.viewer.get("/api/v1/schedules")
        assert listed.status_code == 200, listed.text
        [nightly] = listed.json()
        assert nightly["name"] == "nightly" and nightly["workflow"] == "greet"
        assert nightly["kind"] == "cron" and nightly["spec"] == "0 3 * * *"
        assert nightly["paused"] is False and nightly["next_fire_at"]
        assert s.viewer.get("/api/v1/schedules/nightly").json() == nightly

        paused = s.operator.post("/api/v1/schedules/nightly/pause")
        assert paused.status_code == 200, paused.text
        assert paused.json()["paused"] is True
        assert s.viewer.get("/api/v1/schedules/nightly").json()["paused"] is True
        resumed = s.operator.post("/api/v1/schedules/nightly/resume")
        assert resumed.status_code == 200 and resumed.json()["paused"] is False

        fired = s.operator.post("/api/v1/schedules/nightly/trigger")
        assert fired.status_code == 201, fired.text
        run = fired.json()
        assert run["schedule"] == "nightly" and run["workflow"] == "greet"
        assert _until(s, run["run_id"], "SUCCEEDED")["output"] == "HELLO NIGHT"


# -- events ----------------------------------------------------------------------------------
def test_events_query_filters_and_after(store_path):
    with served(store_path) as s:
        one = _start(s, "greet", input="a", correlation_id="corr-a")["run_id"]
        two = _start(s, "greet", input="b")["run_id"]
        nap = _start(s, "napper")["run_id"]
        for run_id, status in ((one, "SUCCEEDED"), (two, "SUCCEEDED"), (nap, "WAITING")):
            _until(s, run_id, status)

        def events(**params: Any) -> dict:
            r = s.viewer.get("/api/v1/events", params=params)
            assert r.status_code == 200, r.text
            return r.json()

        mine = events(run_id=one)["items"]
        types = [e["type"] for e in mine]
        assert types[0] == "baton.run.enqueued" and types[-1] == "baton.run.succeeded"
        assert types.count("baton.step.completed") == 2
        assert {e["runid"] for e in mine} == {one}
        assert [e["seq"] for e in mine] == sorted(e["seq"] for e in mine)
        for e in mine:
            assert e["specversion"] == "1.0" and e["id"] and e["source"] and e["time"]

        assert {e["runid"] for e in events(correlation_id="corr-a")["items"]} == {one}
        succeeded = events(type="baton.run.succeeded")["items"]
        assert {e["runid"] for e in succeeded} == {one, two}
        both = events(type=["baton.run.succeeded", "baton.run.waiting"])["items"]
        assert {(e["type"], e["runid"]) for e in both} == {
            ("baton.run.succeeded", one),
            ("baton.run.succeeded", two),
            ("baton.run.waiting", nap),
        }
        assert {e["runid"] for e in events(workflow="napper")["items"]} == {nap}
        assert events(workflow="napper", type="baton.run.succeeded")["items"] == []

        everything = events(limit=1000)
        seqs = [e["seq"] for e in everything["items"]]
        assert everything["next_after"] == seqs[-1]
        walked, after = [], 0
        while True:
            page = events(after=after, limit=4)
            if not page["items"]:
                assert page["next_after"] == after
                break
            assert all(e["seq"] > after for e in page["items"])
            walked += [e["seq"] for e in page["items"]]
            after = page["next_after"]
        assert walked == seqs  # no duplicates, no gaps
        assert events(after=seqs[-1])["items"] == []


def test_ingest_a_batch_and_send_it_again(store_path):
    with served(store_path) as s:
        batch = {
            "events": [
                {
                    "id": "shop-1",
                    "type": "com.example.order.placed",
                    "source": "/shop",
                    "subject": "o-1",
                    "time": "2024-03-01T12:00:00Z",
                    "correlationid": "c-shop",
                    "data": {"amount": 42, "items": ["a", "b"]},
                },
                {"id": "shop-2", "type": "com.example.order.placed", "source": "/shop"},
                {"id": "shop-3", "type": "com.example.order.paid", "source": "/shop", "data": 1},
            ]
        }
        first = s.operator.post("/api/v1/events", json=batch)
        assert first.status_code == 202, first.text
        assert first.json() == {"received": 3, "appended": 3}
        again = s.operator.post("/api/v1/events", json=batch)
        assert again.status_code == 202, again.text
        assert again.json() == {"received": 3, "appended": 0}

        placed = s.viewer.get("/api/v1/events", params={"type": "com.example.order.placed"})
        items = placed.json()["items"]
        assert [e["id"] for e in items] == ["shop-1", "shop-2"]
        assert items[0]["data"] == {"amount": 42, "items": ["a", "b"]}
        assert items[0]["subject"] == "o-1" and items[0]["source"] == "/shop"
        assert items[0]["time"].startswith("2024-03-01T12:00:00")
        assert items[0]["correlationid"] == "c-shop"
        by_corr = s.viewer.get("/api/v1/events", params={"correlation_id": "c-shop"}).json()
        assert [e["id"] for e in by_corr["items"]] == ["shop-1"]

        no_ids = {"events": [{"type": "com.example.ping", "source": "/probe"}]}
        for _ in range(2):  # without ids each send is a new event
            r = s.operator.post("/api/v1/events", json=no_ids)
            assert r.json() == {"received": 1, "appended": 1}
        pings = s.viewer.get("/api/v1/events", params={"type": "com.example.ping"}).json()
        assert len(pings["items"]) == 2


# -- nodes, workflows, analytics ------------------------------------------------------------
def test_nodes_workflows_and_analytics(store_path):
    with served(store_path) as s:
        s.switch["fail"] = True
        for name in ("a", "b", "c"):
            _start(s, "greet", input=name)
        dead = _start(s, "flaky", input=1)["run_id"]
        waiting = _start(s, "napper")["run_id"]
        _until(s, dead, "DEAD")
        _until(s, waiting, "WAITING")
        s.operator.post(f"/api/v1/runs/{waiting}/cancel")
        wait_until(
            lambda: all(r["status"] in FINISHED for r in _all_runs(s)), what="every run ended"
        )

        nodes = s.viewer.get("/api/v1/nodes")
        assert nodes.status_code == 200, nodes.text
        alive = [n for n in nodes.json() if n["state"] == "alive"]
        assert alive, nodes.json()
        assert alive[0]["host"] and alive[0]["pid"] > 0 and alive[0]["heartbeat_age"] >= 0
        assert alive[0]["versions"] and alive[0]["runs_owned"] >= 0

        flows = s.viewer.get("/api/v1/workflows")
        assert flows.status_code == 200, flows.text
        assert {(w["name"], w["version"], w["latest"]) for w in flows.json()} == {
            (name, "1", True) for name in ("greet", "flaky", "expense", "waiter", "napper")
        }

        expected = Counter((r["workflow"], r["status"]) for r in _all_runs(s))
        stats = s.viewer.get("/api/v1/analytics", params={"window": 3600, "buckets": 10})
        assert stats.status_code == 200, stats.text
        found = stats.json()
        assert found["window_s"] == 3600 and len(found["timeline"]) == 10
        assert found["since"] < found["until"]
        by_flow = {w["workflow"]: w for w in found["workflows"]}
        assert set(by_flow) == {"greet", "flaky", "napper"}
        for name, flow in by_flow.items():
            mine = {status: n for (wf, status), n in expected.items() if wf == name}
            assert flow["by_status"] == mine, name
            assert flow["runs"] == sum(mine.values())
        assert by_flow["greet"]["success_rate"] == 1.0 and by_flow["greet"]["failures"] == 0
        assert by_flow["greet"]["p50_ms"] is not None
        assert by_flow["flaky"]["success_rate"] == 0.0 and by_flow["flaky"]["failures"] == 1
        assert {x["step"] for x in by_flow["greet"]["steps"]} == {"hello", "shout"}
        total = sum(slot["succeeded"] + slot["failed"] for slot in found["timeline"])
        assert total == sum(expected.values())

        only = s.viewer.get("/api/v1/analytics", params={"workflow": "greet"}).json()
        assert [w["workflow"] for w in only["workflows"]] == ["greet"]


# -- agents ----------------------------------------------------------------------------------
def test_agents_over_http(sqlite_path):
    with agents_node() as node, served(sqlite_path, node=node) as s:
        listed = s.viewer.get("/api/v1/agents")
        assert listed.status_code == 200, listed.text
        assert [(a["name"], a["state"]) for a in listed.json()] == [("idler", "RUNNING")]
        status = s.viewer.get("/api/v1/agents/idler")
        assert status.status_code == 200 and status.json()["name"] == "idler"
        stopped = s.operator.post("/api/v1/agents/idler/stop")
        assert stopped.status_code == 200, stopped.text
        assert stopped.json()["state"] == "STOPPED"
        assert stopped.json()["status"]["state"] == "STOPPED"
        started = s.operator.post("/api/v1/agents/idler/start")
        assert started.status_code == 200, started.text
        assert started.json()["state"] in {"STARTING", "RUNNING"}
        restarted = s.operator.post("/api/v1/agents/idler/restart")
        assert restarted.status_code == 200, restarted.text
        assert_problem(s.viewer.get("/api/v1/agents/ghost"), 404, "agent-not-found")
        assert_problem(s.operator.post("/api/v1/agents/ghost/stop"), 404, "agent-not-found")


def test_agents_without_a_node_are_503(sqlite_path):
    with served(sqlite_path) as s:
        for method, path in (("GET", "/api/v1/agents"), ("POST", "/api/v1/agents/x/restart")):
            body = assert_problem(s.operator.request(method, path), 503, "no-node")
            assert "node" in body["detail"]
        assert s.viewer.get("/api/v1/runs").status_code == 200


# -- bad input: every error is a problem document, and the node keeps serving ----------------
@pytest.fixture
def api(sqlite_path):
    with served(sqlite_path, max_body=64 * 1024) as s:
        yield s
        assert s.viewer.get("/healthz").json() == {"status": "ok"}
        assert s.viewer.get("/api/v1/runs").status_code == 200  # still serving


def test_malformed_json(api):
    for raw in (b'{"workflow": ', b"not json", b'{"workflow": "greet",}'):
        r = api.operator.post(
            "/api/v1/runs", content=raw, headers={"content-type": "application/json"}
        )
        body = assert_problem(r, 400, "malformed-json")
        assert "JSON" in body["title"]


def test_wrong_types_name_the_json_path(api):
    r = api.operator.post("/api/v1/runs", json={"workflow": "greet", "priority": "high"})
    body = assert_problem(r, 422, "invalid-request")
    assert {"path": "$.priority", "message": body["errors"][0]["message"]} in body["errors"]
    assert "$.priority" in body["detail"]

    r = api.operator.post("/api/v1/runs", json={"workflow": 7, "kwargs": [1], "oops": True})
    paths = {e["path"] for e in assert_problem(r, 422, "invalid-request")["errors"]}
    assert {"$.workflow", "$.kwargs", "$.oops"} <= paths

    run_id = api.app.start("greet", "x").id
    r = api.operator.post(
        f"/api/v1/runs/{run_id}/fork", json={"from_step": 1, "input": {"args": "nope"}}
    )
    assert [e["path"] for e in assert_problem(r, 422)["errors"]] == ["$.input.args"]
    r = api.operator.post(
        "/api/v1/events", json={"events": [{"type": "t", "source": "s"}, {"type": 5}]}
    )
    paths = {e["path"] for e in assert_problem(r, 422)["errors"]}
    assert paths == {"$.events[1].type", "$.events[1].source"}
    r = api.operator.post("/api/v1/runs", json=["greet"])
    assert assert_problem(r, 422)["errors"]
    r = api.viewer.get("/api/v1/runs", params={"limit": "many"})
    assert [e["path"] for e in assert_problem(r, 422)["errors"]] == ["query.limit"]
    r = api.operator.post("/api/v1/runs", json={"workflow": "greet", "input": 1, "args": [1]})
    assert "input or args" in assert_problem(r, 422)["detail"]


def test_unknown_ids_are_404(api):
    missing = "0190c7a0-0000-7000-8000-000000000000"
    for method, path, body in (
        ("GET", f"/api/v1/runs/{missing}", None),
        ("GET", f"/api/v1/runs/{missing}/steps", None),
        ("POST", f"/api/v1/runs/{missing}/cancel", None),
        ("POST", f"/api/v1/runs/{missing}/redrive", None),
        ("POST", f"/api/v1/runs/{missing}/fork", {"from_step": 1}),
        ("POST", f"/api/v1/runs/{missing}/signals", {"name": "go"}),
        ("POST", f"/api/v1/dlq/{missing}/redrive", None),
    ):
        r = api.operator.request(method, path, json=body)
        assert_problem(r, 404, "run-not-found")
        assert r.json()["instance"] == path
    r = api.operator.post(f"/api/v1/runs/{missing}/approvals/manager", json={"approved": True})
    assert_problem(r, 404)
    for path in ("/api/v1/schedules/nope", "/api/v1/schedules/nope/pause"):
        method = "GET" if path.endswith("nope") else "POST"
        assert_problem(api.operator.request(method, path), 404, "schedule-not-found")
    assert_problem(api.operator.post("/api/v1/schedules/nope/trigger"), 404)
    assert_problem(api.viewer.get("/api/v1/no-such-thing"), 404)
    assert_problem(api.viewer.delete("/api/v1/runs"), 405)
    napper = api.app.start("napper").id
    wait_until(lambda: api.app.get_run(napper).status == "WAITING")
    r = api.operator.post(f"/api/v1/runs/{napper}/approvals/manager", json={"approved": True})
    assert_problem(r, 404, "approval-not-found")


def test_unknown_workflow_and_query_values(api):
    r = api.operator.post("/api/v1/runs", json={"workflow": "no-such-flow"})
    body = assert_problem(r, 422, "unknown-workflow")
    assert "no-such-flow" in body["detail"]
    r = api.operator.post("/api/v1/runs", json={"workflow": "greet", "version": "9"})
    assert_problem(r, 422, "unknown-workflow")
    r = api.viewer.get("/api/v1/runs", params={"status": "SLEEPY"})
    assert "SLEEPY" in assert_problem(r, 422)["detail"]
    r = api.viewer.get("/api/v1/approvals", params={"status": "MAYBE"})
    assert "MAYBE" in assert_problem(r, 422)["detail"]
    for params in ({"limit": 0}, {"limit": 501}, {"cursor": "x" * 101}):
        assert_problem(api.viewer.get("/api/v1/runs", params=params), 422)
    assert_problem(api.viewer.get("/api/v1/events", params={"after": -1}), 422)
    assert_problem(api.viewer.get("/api/v1/analytics", params={"window": 0}), 422)


def test_fork_out_of_range_and_approval_twice(api):
    run_id = api.app.start("greet", "x").id
    wait_until(lambda: api.app.get_run(run_id).status == "SUCCEEDED")
    r = api.operator.post(f"/api/v1/runs/{run_id}/fork", json={"from_step": 4})
    assert_problem(r, 422, "step-not-found")
    r = api.operator.post(f"/api/v1/runs/{run_id}/fork", json={"from_step": 0})
    assert [e["path"] for e in assert_problem(r, 422, "invalid-request")["errors"]] == [
        "$.from_step"
    ]
    r = api.operator.post(f"/api/v1/runs/{run_id}/signals", json={"name": "go"})
    assert_problem(r, 409, "invalid-state")  # a finished run takes no signal

    expense = api.app.start("expense", 5).id
    wait_until(lambda: api.app.approvals(run_id=expense))
    url = f"/api/v1/runs/{expense}/approvals/manager"
    assert api.operator.post(url, json={"approved": True}).status_code == 200
    assert_problem(api.operator.post(url, json={"approved": True}), 409, "approval-closed")


def test_oversized_bodies_are_413(api):
    big = {"workflow": "greet", "input": "x" * (70 * 1024)}
    r = api.operator.post("/api/v1/runs", json=big)
    body = assert_problem(r, 413, "body-too-large")
    assert str(64 * 1024) in body["detail"]

    def chunks():  # no content-length: the limit holds for a streamed body too
        yield b'{"workflow": "greet", "input": "'
        for _ in range(80):
            yield b"y" * 1024
        yield b'"}'

    with httpx.Client(base_url=api.url, headers=api.operator.headers) as raw:
        r = raw.post("/api/v1/runs", content=chunks(), headers={"content-type": "application/json"})
    assert_problem(r, 413, "body-too-large")
    assert api.app.runs(workflow="greet") == []  # nothing was started
    fits = api.operator.post("/api/v1/runs", json={"workflow": "greet", "input": "x" * 1000})
    assert fits.status_code == 201


def test_missing_and_bad_tokens_are_401(api):
    anonymous = api.as_(None)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic dmljOnNlY3JldA=="},
        {"Authorization": "Bearer"},
        {"Authorization": TOKENS[Role.ADMIN].token},
    ):
        r = anonymous.get("/api/v1/runs", headers=headers)
        assert_problem(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "Bearer"
        r = anonymous.post("/api/v1/runs", json={"workflow": "greet"}, headers=headers)
        assert_problem(r, 401, "unauthorized")
    assert api.app.runs(workflow="greet") == []
    r = api.viewer.post("/api/v1/runs", json={"workflow": "greet"})
    body = assert_problem(r, 403, "forbidden")
    assert body["required_role"] == "operator"
    assert anonymous.get("/healthz").status_code == 200  # health needs no token
    assert anonymous.get("/readyz").json() == {"status": "ready"}
    assert anonymous.get("/api/v1/openapi.json").status_code == 200


def test_hostile_input_is_refused_before_it_is_stored(store_path):
    """Found by fuzzing: each of these once got a 500, or was stored and then broke every
    listing that showed it."""
    with served(store_path) as s:
        op = s.operator
        deep = "[" * 150 + "]" * 150
        for path, raw in (
            ("/api/v1/runs", f'{{"workflow": "greet", "input": {deep}}}'),
            ("/api/v1/runs", f'{{"workflow": "greet", "kwargs": {{"name": {deep}}}}}'),
            ("/api/v1/events", f'{{"events": [{{"type": "t", "source": "s", "data": {deep}}}]}}'),
        ):
            r = op.post(path, content=raw, headers={"content-type": "application/json"})
            assert "nested deeper than 100" in assert_problem(r, 422, "invalid-request")["detail"]
        fine = _start(s, "greet", input=json.loads("[" * 90 + "]" * 90))  # 100 levels is fine
        assert _run(s, fine["run_id"])["input"]["args"][0] == json.loads("[" * 90 + "]" * 90)

        for field in ("idempotency_key", "correlation_id", "queue", "workflow"):
            r = op.post("/api/v1/runs", json={"workflow": "greet", field: "a\x00b"})
            assert assert_problem(r, 422)["errors"][0]["path"] == f"$.{field}"
        lone = b'{"workflow": "greet", "idempotency_key": "\\ud800"}'  # a lone surrogate
        r = op.post("/api/v1/runs", content=lone, headers={"content-type": "application/json"})
        assert assert_problem(r, 422)["errors"][0]["path"] == "$.idempotency_key"
        r = op.post("/api/v1/events", json={"events": [{"type": "t\x00", "source": "s"}]})
        assert assert_problem(r, 422)["errors"][0]["path"] == "$.events[0].type"
        for url in (
            "/api/v1/runs/a%00b",
            "/api/v1/runs?cursor=a%00",
            "/api/v1/events?type=x%00",
            "/api/v1/schedules/a%00/pause",
            "/api/v1/approvals?run_id=%00",
        ):
            method = "POST" if url.endswith("pause") else "GET"
            assert_problem(op.request(method, url), 400, "nul-in-url")

        early = {"type": "t", "source": "s", "time": "0001-01-01T00:00:00+14:00"}
        r = op.post("/api/v1/events", json={"events": [early]})
        assert assert_problem(r, 422)["errors"][0]["path"] == "$.events[0].time"
        late = {"type": "t", "source": "s", "time": "9999-12-31T23:59:59Z"}
        naive = {"type": "t", "source": "s", "time": "2024-01-01T00:00:00"}
        assert op.post("/api/v1/events", json={"events": [late, naive]}).status_code == 202
        times = [e["time"] for e in s.viewer.get("/api/v1/events?type=t").json()["items"]]
        assert times == ["9999-12-31T23:59:59.000000Z", "2024-01-01T00:00:00.000000Z"]
        r = s.viewer.get("/api/v1/events", params={"after": 2**64})
        assert_problem(r, 422)

        r = op.post("/api/v1/runs", json={"workflow": "greet", "kwargs": {"queue": "x"}})
        assert "reserved" in assert_problem(r, 422)["detail"]
        assert s.app.runs(workflow="greet") == [s.app.get_run(fine["run_id"])]

        # a value nested too deep for the renderers, stored through the Python API, is not
        # shown, and the listings that hold it still answer
        sunk = s.app.start("greet", json.loads("[" * 400 + "]" * 400)).id
        shown = _run(s, sunk)["input"]
        assert shown.startswith("(not shown: JSON nested deeper than")
        assert sunk in {r["run_id"] for r in _all_runs(s)}


def test_the_openapi_document_describes_errors(api):
    doc = api.viewer.get("/api/v1/openapi.json").json()
    assert doc["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            default = op["responses"]["default"]["content"]
            assert set(default) == {PROBLEM}, (method, path)
            if "422" in op["responses"]:
                assert set(op["responses"]["422"]["content"]) == {PROBLEM}, (method, path)
    start = doc["paths"]["/api/v1/runs"]["post"]
    assert {"200", "201"} <= set(start["responses"])
    assert start["x-baton-role"] == "operator"
    assert api.viewer.get("/api/v1/docs").status_code == 200


def test_every_error_is_a_problem_and_the_node_keeps_serving(api):
    """A burst of bad requests of every kind, then normal work goes on."""
    bad = [
        (
            "POST",
            "/api/v1/runs",
            {"content": b"{", "headers": {"content-type": "application/json"}},
        ),
        ("POST", "/api/v1/runs", {"json": {"workflow": ""}}),
        ("POST", "/api/v1/runs", {"content": b'{"workflow": "greet", "input": NaN}'}),
        ("GET", "/api/v1/runs/%00", {}),
        ("GET", "/api/v1/events", {"params": {"limit": 10**9}}),
        ("POST", "/api/v1/events", {"json": {"events": []}}),
        ("POST", "/api/v1/runs/x/fork", {"json": {}}),
    ]
    for method, path, kwargs in bad * 3:
        r = api.operator.request(method, path, **kwargs)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    run = _start(api, "greet", input="after")
    assert _until(api, run["run_id"], "SUCCEEDED")["output"] == "HELLO AFTER"
