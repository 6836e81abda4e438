"""Webhooks over real HTTP on loopback: outbound deliveries (signed per Standard Webhooks,
retried with back-off, kept when they fail, redelivered on request, never lost when a
deliverer dies) and inbound hooks that start workflows. The store parts run on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import baton
from apikit import Served, assert_problem, served
from baton.core.events import CloudEvent
from baton.core.roles import Role
from baton.server.webhooks import WebhookDeliverer, new_secret
from baton.server.webhooks.signing import check_secret, signed_headers
from baton.store import open_store
from baton.store.records import EventRecord
from baton.store.webhooks import (
    FAN_OUT_CURSOR,
    DeliveryStatus,
    WebhookSubscription,
    check_event_types,
    start_cursor,
    type_matches,
)
from conftest import wait_until
from serverkit import client, serving

FAST = baton.Retry(max_attempts=5, initial=0.05, backoff=1, max_delay=0.05, jitter=False)


# -- a receiver that checks every signature ----------------------------------------------------
class Receiver:
    """Webhook endpoints `/in/{name}`; `answer(name, msg_id, n)` gives the status of the n-th
    attempt (1-based) of a message. Every request's signature is verified."""

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.lock = threading.Lock()
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.accepted: dict[str, list[dict]] = defaultdict(list)
        self.unverified: list[str] = []
        self.hang: set[str] = set()  # endpoints that never answer
        self.answer: Callable[[str, str, int], int] = lambda name, msg, n: 200
        self.app = Starlette(routes=[Route("/in/{name}", self._handle, methods=["POST"])])
        self.url = ""

    def endpoint(self, name: str) -> str:
        return f"{self.url}/in/{name}"

    def accepted_ids(self, name: str) -> list[str]:
        with self.lock:
            return [m["id"] for m in self.accepted[name]]

    async def _handle(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        try:
            message = Webhook(self.secrets[name]).verify(body, dict(request.headers))
        except Exception as exc:
            self.unverified.append(f"{name}: {type(exc).__name__}: {exc}")
            return Response("bad signature", status_code=400)
        msg_id = request.headers["webhook-id"]
        assert message["id"] == msg_id
        with self.lock:
            self.attempts[(name, msg_id)] += 1
            n = self.attempts[(name, msg_id)]
        while name in self.hang:
            await asyncio.sleep(0.02)
        status = self.answer(name, msg_id, n)
        if 200 <= status < 300:
            with self.lock:
                self.accepted[name].append(message)
        return Response(f"answer {status}", status_code=status)


@contextlib.contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    with serving(receiver.app) as url:
        receiver.url = url
        try:
            yield receiver
        finally:
            receiver.hang.clear()


@contextlib.contextmanager
def delivering(app: baton.App, **options: Any) -> Iterator[WebhookDeliverer]:
    options.setdefault("poll_interval", 0.05)
    options.setdefault("retry", FAST)
    options.setdefault("timeout", 5)
    deliverer = WebhookDeliverer(app, **options).start()
    try:
        yield deliverer
    finally:
        deliverer.stop(timeout=2)


def subscribe(s: Served, receiver: Receiver, name: str, **body: Any) -> dict:
    r = s.admin.post("/api/v1/webhooks", json={"url": receiver.endpoint(name), **body})
    assert r.status_code == 201, r.text
    created = r.json()
    receiver.secrets[name] = created["secret"]
    return created


def deliveries(s: Served, sub_id: str, **params: Any) -> list[dict]:
    r = s.viewer.get(f"/api/v1/webhooks/{sub_id}/deliveries", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()["items"]


def expected_events(app: baton.App, sub_id: str, patterns: list[str]) -> list[EventRecord]:
    start = app.store.get_cursor(start_cursor(sub_id)) or 0
    found = app.store.list_events(after=start, limit=10_000)
    return [e for e in found if type_matches(patterns, e.type)]


def run_greet(s: Served, name: str) -> str:
    r = s.operator.post("/api/v1/runs", json={"workflow": "greet", "input": name})
    assert r.status_code == 201, r.text
    run_id = r.json()["run_id"]
    assert s.app.handle(run_id).result(timeout=20) == f"HELLO {name.upper()}"
    return run_id


def all_delivered(s: Served, sub_id: str, count: int) -> list[dict]:
    def done() -> list[dict] | None:
        found = deliveries(s, sub_id)
        ok = len(found) == count and all(d["status"] == "DELIVERED" for d in found)
        return found if ok else None

    return wait_until(done, 30, f"{count} deliveries of {sub_id} to be DELIVERED")


# -- outbound: retries, exactly one acceptance each --------------------------------------------
def test_each_event_is_delivered_once_after_two_failures(store_path):
    with receiving() as receiver, served(store_path) as s:
        receiver.answer = lambda name, msg, n: 500 if n <= 2 else 200
        sub = subscribe(s, receiver, "flaky", event_types=["baton.run.*"])
        with delivering(s.app):
            run_greet(s, "ann")
            run_greet(s, "bob")
            wanted = expected_events(s.app, sub["id"], ["baton.run.*"])
            assert {e.type for e in wanted} >= {"baton.run.enqueued", "baton.run.succeeded"}
            found = all_delivered(s, sub["id"], len(wanted))
        assert receiver.unverified == []
        accepted = receiver.accepted_ids("flaky")
        assert sorted(accepted) == sorted(e.id for e in wanted)  # each once, none missing
        assert all(d["attempts"] == 3 for d in found), found
        assert all(d["last_status"] == 200 and d["last_error"] is None for d in found)
        assert all(receiver.attempts[("flaky", e.id)] == 3 for e in wanted)
        # the body is the event as the API shows it, a CloudEvent
        first = next(m for m in receiver.accepted["flaky"] if m["id"] == wanted[0].id)
        assert first["specversion"] == "1.0" and first["type"] == wanted[0].type
        assert first["seq"] == wanted[0].seq and first["source"] == wanted[0].source


def test_a_failing_receiver_leaves_a_failed_delivery_to_redeliver(store_path):
    with receiving() as receiver, served(store_path) as s:
        receiver.answer = lambda name, msg, n: 503
        sub = subscribe(s, receiver, "down", event_types=["baton.run.succeeded"])
        retry = baton.Retry(max_attempts=3, initial=0.05, backoff=1, jitter=False)
        with delivering(s.app, retry=retry) as deliverer:
            run_greet(s, "cy")

            def failed() -> dict | None:
                found = deliveries(s, sub["id"], status="FAILED")
                return found[0] if found else None

            gone = wait_until(failed, 30, "the delivery to fail")
            assert gone["attempts"] == 3 and gone["last_status"] == 503
            assert gone["last_error"].startswith("HTTP 503") and "answer 503" in gone["last_error"]
            assert gone["delivered_at"] is None and gone["next_attempt_at"] is None
            assert deliveries(s, sub["id"], status="PENDING,DELIVERED") == []

            # a viewer cannot redeliver; a missing delivery is a 404
            r = s.viewer.post(f"/api/v1/webhook-deliveries/{gone['id']}/redeliver")
            assert_problem(r, 403, "forbidden")
            r = s.operator.post("/api/v1/webhook-deliveries/nope/redeliver")
            assert_problem(r, 404, "webhook-delivery-not-found")

            receiver.answer = lambda name, msg, n: 200  # healed
            r = s.operator.post(f"/api/v1/webhook-deliveries/{gone['id']}/redeliver")
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "PENDING" and r.json()["attempts"] == 0
            deliverer.wake()
            (done,) = all_delivered(s, sub["id"], 1)
            assert done["attempts"] == 1 and done["last_status"] == 200
            assert done["delivered_at"] is not None
            assert receiver.accepted_ids("down") == [gone["event_id"]]
            assert receiver.attempts[("down", gone["event_id"])] == 4

        # with no deliverer running: a delivered one may be sent again; a pending one is a 409
        r = s.operator.post(f"/api/v1/webhook-deliveries/{gone['id']}/redeliver")
        assert r.status_code == 200 and r.json()["status"] == "PENDING", r.text
        r = s.operator.post(f"/api/v1/webhook-deliveries/{gone['id']}/redeliver")
        assert_problem(r, 409, "delivery-pending")
        with delivering(s.app, retry=retry):
            wait_until(lambda: len(receiver.accepted_ids("down")) == 2, 20, "a second delivery")
        assert receiver.unverified == []


# -- outbound: nothing lost when a deliverer dies ----------------------------------------------
def test_a_deliverer_killed_midway_loses_nothing(store_path):
    with receiving() as receiver, served(store_path) as s:
        sub = subscribe(s, receiver, "slow", event_types=["*"])
        receiver.hang.add("slow")  # the first deliverer's POSTs never get an answer
        first = WebhookDeliverer(
            s.app, poll_interval=0.05, retry=FAST, timeout=30, lease=1.0, owner="first"
        ).start()
        try:
            run_greet(s, "dee")
            wait_until(lambda: sum(receiver.attempts.values()) >= 4, 20, "POSTs under way")
        finally:
            first.stop(timeout=0)  # abandons its claims: nothing is settled
        held = deliveries(s, sub["id"])
        assert held and all(d["status"] == "PENDING" for d in held)
        owners = {d.id: d.owner for d in s.app.store.list_webhook_deliveries(sub["id"])}
        abandoned = {d for d, owner in owners.items() if owner is not None}
        assert len(abandoned) == 4 and {owners[d] for d in abandoned} == {"first"}
        run_greet(s, "eve")  # logged while no deliverer runs
        receiver.hang.clear()
        with delivering(s.app, lease=1.0, owner="second"):
            wanted = expected_events(s.app, sub["id"], ["*"])
            found = all_delivered(s, sub["id"], len(wanted))
        assert sorted(d["event_id"] for d in found) == sorted(e.id for e in wanted)
        assert set(receiver.accepted_ids("slow")) == {e.id for e in wanted}
        # an abandoned attempt counts: those were sent twice, the others once
        assert all(d["attempts"] == (2 if d["id"] in abandoned else 1) for d in found), found
        assert receiver.unverified == []


def test_a_stuck_url_does_not_hold_up_the_others(tmp_path):
    with receiving() as receiver, served(tmp_path / "baton.db") as s:
        stuck = subscribe(s, receiver, "stuck", event_types=["*"])
        quick = subscribe(s, receiver, "quick", event_types=["*"])
        receiver.hang.add("stuck")
        with delivering(s.app, timeout=30, concurrency=4, per_subscription=2):
            run_greet(s, "ned")
            run_greet(s, "ola")
            wanted = expected_events(s.app, quick["id"], ["*"])
            all_delivered(s, quick["id"], len(wanted))  # while "stuck" never answers
            # the stuck URL holds its own two slots, no more
            stuck_attempts = sum(n for (name, _), n in receiver.attempts.items() if name == "stuck")
            assert stuck_attempts == 2
            assert {d["status"] for d in deliveries(s, stuck["id"])} == {"PENDING"}
            receiver.hang.clear()
            all_delivered(s, stuck["id"], len(wanted))
        assert receiver.unverified == []


def test_two_deliverers_share_the_work_and_fan_out_once(store_path):
    with receiving() as receiver, served(store_path) as s:
        other = baton.App(store_path, worker=False)
        try:
            sub = subscribe(s, receiver, "both", event_types=["*"])
            with delivering(s.app, owner="one"), delivering(other, owner="two"):
                for name in ("fay", "gus", "hal"):
                    run_greet(s, name)
                wanted = expected_events(s.app, sub["id"], ["*"])
                found = all_delivered(s, sub["id"], len(wanted))
        finally:
            other.shutdown(timeout=5)
        assert sorted(d["event_id"] for d in found) == sorted(e.id for e in wanted)
        accepted = Counter(receiver.accepted_ids("both"))
        assert accepted == Counter({e.id: 1 for e in wanted})
        assert all(d["attempts"] == 1 for d in found)


# -- outbound: filters -------------------------------------------------------------------------
def test_event_type_filters_and_paused_subscriptions(store_path):
    with receiving() as receiver, served(store_path) as s:
        run_greet(s, "before")  # logged before any subscription: never sent
        exact = subscribe(s, receiver, "exact", event_types=["baton.run.succeeded"])
        steps = subscribe(s, receiver, "steps", event_types=["baton.step.*"])
        every = subscribe(s, receiver, "every", event_types=["*"])
        both = subscribe(s, receiver, "both", event_types=["baton.run.enqueued", "baton.step.*"])
        paused = subscribe(s, receiver, "paused", event_types=["*"], active=False)
        with delivering(s.app):
            run_id = run_greet(s, "ivy")
            for sub, patterns in (
                (exact, ["baton.run.succeeded"]),
                (steps, ["baton.step.*"]),
                (every, ["*"]),
                (both, ["baton.run.enqueued", "baton.step.*"]),
            ):
                wanted = expected_events(s.app, sub["id"], patterns)
                assert wanted and all(e.run_id == run_id for e in wanted)
                all_delivered(s, sub["id"], len(wanted))
            time.sleep(0.3)
        assert {m["type"] for m in receiver.accepted["exact"]} == {"baton.run.succeeded"}
        assert len(receiver.accepted["exact"]) == 1
        assert {m["type"] for m in receiver.accepted["steps"]} == {"baton.step.completed"}
        assert len(receiver.accepted["steps"]) == 2  # hello and shout
        assert {m["type"] for m in receiver.accepted["both"]} == {
            "baton.run.enqueued",
            "baton.step.completed",
        }
        assert all(m["runid"] == run_id for m in receiver.accepted["every"])
        assert receiver.accepted["paused"] == [] and deliveries(s, paused["id"]) == []
        assert receiver.unverified == []


def test_a_subscription_made_active_receives_from_then_on(store_path):
    with receiving() as receiver, served(store_path) as s:
        sub = subscribe(s, receiver, "later", event_types=["baton.run.succeeded"], active=False)
        with delivering(s.app):
            run_greet(s, "jo")  # inactive: not for it
            r = s.admin.patch(f"/api/v1/webhooks/{sub['id']}", json={"active": True})
            assert r.status_code == 200 and r.json()["active"] is True, r.text
            run_id = run_greet(s, "kim")
            (done,) = all_delivered(s, sub["id"], 1)
            time.sleep(0.3)
            assert len(deliveries(s, sub["id"])) == 1
        assert [m["runid"] for m in receiver.accepted["later"]] == [run_id]
        assert done["event_type"] == "baton.run.succeeded"


def test_event_type_patterns():
    assert type_matches(["*"], "anything")
    assert type_matches(["baton.run.*"], "baton.run.succeeded")
    assert not type_matches(["baton.run.*"], "baton.runner.x")
    assert not type_matches(["baton.run.*"], "baton.run")
    assert type_matches(["a.b", "baton.step.*"], "baton.step.completed")
    assert not type_matches(["baton.run.succeeded"], "baton.run.succeeded.late")
    assert check_event_types(["a.*", "a.*", "b"]) == ["a.*", "b"]
    for bad in ([], [""], ["a.*.b"], ["*.x"], ["a*"], ["a b"], [".*"]):
        with pytest.raises(ValueError):
            check_event_types(bad)


# -- the store's part, on both backends --------------------------------------------------------
def _sub(sub_id: str, types: list[str], active: bool = True) -> WebhookSubscription:
    return WebhookSubscription(
        sub_id, "http://127.0.0.1:9/x", types, new_secret(), None, active, 1.0, 1.0
    )


def _events(store: Any, *types: str) -> list[EventRecord]:
    after = store.get_cursor(FAN_OUT_CURSOR) or 0
    store.append_events([CloudEvent(type=t, source="test", time=2.0) for t in types]).result()
    return store.list_events(after=after, limit=1000)


def test_store_fan_out_is_exactly_once_and_claims_lease(store_path):
    store = open_store(store_path)
    try:
        store.append_events([CloudEvent(type="old", source="test", time=1.0)]).result()
        store.create_webhook(_sub("s1", ["a.*"])).result()
        store.create_webhook(_sub("s2", ["*"])).result()
        store.create_webhook(_sub("s3", ["*"], active=False)).result()
        assert store.get_cursor(FAN_OUT_CURSOR) == store.get_cursor(start_cursor("s1")) > 0
        at = store.get_cursor(FAN_OUT_CURSOR)
        events = _events(store, "a.x", "b.y", "a.z")
        upto = events[-1].seq
        assert store.fan_out_webhooks(FAN_OUT_CURSOR, at, upto, events, 3.0).result() == 5
        # the same batch again, from the old position: the cursor moved, nothing is written
        assert store.fan_out_webhooks(FAN_OUT_CURSOR, at, upto, events, 3.0).result() is None
        # even a replay past the cursor check inserts no second delivery of a pair
        assert store.get_cursor(FAN_OUT_CURSOR) == upto
        store.fan_out_webhooks(FAN_OUT_CURSOR, upto, upto, events, 3.0).result()
        rows = store.list_webhook_deliveries()
        assert len(rows) == 5 and {r.status for r in rows} == {"PENDING"}
        assert Counter(r.subscription_id for r in rows) == {"s1": 2, "s2": 3}
        assert store.next_webhook_due() == 3.0

        # claims: at most 1 per subscription here, leased; others see nothing while held
        got = store.claim_webhook_deliveries("w1", 10, 4.0, 5.0, per_subscription=1).result()
        assert sorted(c.delivery.subscription_id for c in got) == ["s1", "s2"]
        assert all(c.delivery.attempts == 1 and c.event is not None for c in got)
        assert got[0].event.id == got[0].delivery.event_id
        busy = {"s1": 1, "s2": 1}
        more = store.claim_webhook_deliveries(
            "w1", 10, 4.0, 5.0, per_subscription=2, busy=busy
        ).result()
        assert sorted(c.delivery.subscription_id for c in more) == ["s1", "s2"]
        rest = store.claim_webhook_deliveries("w2", 10, 4.0, 5.0).result()
        assert [c.delivery.subscription_id for c in rest] == ["s2"]
        assert store.claim_webhook_deliveries("w2", 10, 4.5, 5.0).result() == []

        # a stale claim cannot settle; after the lease another deliverer retakes it
        first = got[0]
        d = first.delivery
        retaken = store.claim_webhook_deliveries("w3", 10, 9.5, 5.0).result()
        assert d.id in {c.delivery.id for c in retaken}
        again = next(c for c in retaken if c.delivery.id == d.id)
        assert again.delivery.attempts == 2 and again.delivery.owner == "w3"
        stale = store.settle_webhook_delivery(d.id, "w1", 1, 9.6, DeliveryStatus.DELIVERED)
        assert stale.result() is False
        ok = store.settle_webhook_delivery(
            d.id,
            "w3",
            2,
            9.7,
            DeliveryStatus.PENDING,
            retry_at=20.0,
            last_status=500,
            last_error="HTTP 500",
        )
        assert ok.result() is True
        row = store.get_webhook_delivery(d.id)
        assert (row.status, row.owner, row.available_at, row.last_status) == (
            "PENDING",
            None,
            20.0,
            500,
        )
        assert d.id not in {
            c.delivery.id for c in store.claim_webhook_deliveries("w3", 10, 19.0, 5.0).result()
        }

        # failed for good, then redelivered from its first attempt
        (_back,) = [
            c
            for c in store.claim_webhook_deliveries("w4", 10, 21.0, 5.0).result()
            if c.delivery.id == d.id
        ]
        store.settle_webhook_delivery(
            d.id, "w4", 3, 21.5, DeliveryStatus.FAILED, last_status=404, last_error="HTTP 404"
        ).result()
        assert store.list_webhook_deliveries(d.subscription_id, ["FAILED"])
        redone, changed = store.redeliver_webhook(d.id, 22.0).result()
        assert changed and redone.status == "PENDING" and redone.attempts == 0
        assert redone.last_status == 404  # kept until the next attempt
        assert store.redeliver_webhook(d.id, 22.0).result()[1] is False
        assert store.redeliver_webhook("missing", 22.0).result() == (None, False)

        # a paused subscription's deliveries wait; a deleted one's are gone
        store.update_webhook(d.subscription_id, 23.0, active=False).result()
        claimed = store.claim_webhook_deliveries("w5", 10, 40.0, 5.0).result()
        assert all(c.delivery.subscription_id != d.subscription_id for c in claimed)
        assert store.delete_webhook("s2").result() is True
        assert store.delete_webhook("s2").result() is False
        assert store.list_webhook_deliveries("s2") == []
        assert store.get_cursor(start_cursor("s2")) is None
    finally:
        store.close()


def test_store_updates_subscriptions(store_path):
    store = open_store(store_path)
    try:
        store.create_webhook(_sub("s1", ["*"])).result()
        changed = store.update_webhook(
            "s1", 5.0, event_types=["x.*"], url="https://example.com/h", description="d"
        ).result()
        assert (changed.event_types, changed.url, changed.description) == (
            ["x.*"],
            "https://example.com/h",
            "d",
        )
        assert changed.updated_at == 5.0 and changed.active is True
        cleared = store.update_webhook("s1", 6.0, description=None).result()
        assert cleared.description is None and cleared.url == "https://example.com/h"
        assert store.update_webhook("nope", 6.0, active=False).result() is None
        assert [s.id for s in store.list_webhooks()] == ["s1"]
        assert store.get_webhook("s1").secret.startswith("whsec_")
    finally:
        store.close()


# -- the API: roles, validation, redaction -----------------------------------------------------
def test_webhook_routes_check_roles_and_input(tmp_path):
    with served(tmp_path / "baton.db") as s:
        body = {"url": "https://example.com/hook", "event_types": ["baton.run.*"]}
        for role in (Role.VIEWER, Role.OPERATOR):
            assert_problem(s.as_(role).post("/api/v1/webhooks", json=body), 403, "forbidden")
        assert_problem(s.as_(None).post("/api/v1/webhooks", json=body), 401, "unauthorized")
        r = s.admin.post("/api/v1/webhooks", json={**body, "description": "ops"})
        assert r.status_code == 201, r.text
        created = r.json()
        assert r.headers["location"] == f"/api/v1/webhooks/{created['id']}"
        check_secret(created["secret"])
        assert created["active"] is True and created["description"] == "ops"

        listed = s.viewer.get("/api/v1/webhooks").json()
        assert [w["id"] for w in listed] == [created["id"]]
        assert created["secret"] not in json.dumps(listed)
        got = s.viewer.get(f"/api/v1/webhooks/{created['id']}").json()
        assert got["secret"] == "whsec_***" and got["url"] == body["url"]
        assert_problem(s.viewer.get("/api/v1/webhooks/nope"), 404, "webhook-not-found")

        given = new_secret()
        r = s.admin.post("/api/v1/webhooks", json={**body, "secret": given})
        assert r.status_code == 201 and r.json()["secret"] == given

        for bad in (
            {"url": "ftp://example.com/x"},
            {"url": "http://"},
            {"url": "example.com/hook"},
            {"url": "http://exa mple.com/"},
            {"url": "http://example.com:99999/"},
            {**body, "event_types": ["baton.*.run"]},
            {**body, "event_types": []},
            {**body, "secret": "not-a-secret"},
            {**body, "secret": "whsec_c2hvcnQ="},
            {**body, "surprise": 1},
        ):
            assert_problem(s.admin.post("/api/v1/webhooks", json=bad), 422, "invalid-request")

        path = f"/api/v1/webhooks/{created['id']}"
        assert_problem(s.operator.patch(path, json={"active": False}), 403, "forbidden")
        r = s.admin.patch(path, json={"active": False, "event_types": ["*"]})
        assert r.status_code == 200, r.text
        assert r.json()["active"] is False and r.json()["event_types"] == ["*"]
        assert r.json()["description"] == "ops" and r.json()["secret"] == "whsec_***"
        assert_problem(s.admin.patch(path, json={"url": "gopher://x"}), 422)
        assert_problem(s.admin.patch(path, json={"url": None}), 422)
        assert_problem(s.admin.patch("/api/v1/webhooks/nope", json={}), 404)

        r = s.viewer.get(f"{path}/deliveries", params={"status": "FAILED,PENDING"})
        assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
        assert_problem(s.viewer.get(f"{path}/deliveries", params={"status": "LOST"}), 422)
        assert_problem(s.viewer.get("/api/v1/webhooks/nope/deliveries"), 404)

        assert_problem(s.operator.delete(path), 403, "forbidden")
        assert s.admin.delete(path).status_code == 204
        assert_problem(s.admin.delete(path), 404, "webhook-not-found")
        assert_problem(s.viewer.get(path), 404)


def test_deliveries_page_newest_first(tmp_path):
    with receiving() as receiver, served(tmp_path / "baton.db") as s:
        sub = subscribe(s, receiver, "paged", event_types=["*"])
        with delivering(s.app):
            run_greet(s, "lou")
            wanted = expected_events(s.app, sub["id"], ["*"])
            all_delivered(s, sub["id"], len(wanted))
        seen, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = s.viewer.get(f"/api/v1/webhooks/{sub['id']}/deliveries", params=params)
            seen += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        ids = [d["id"] for d in seen]
        assert ids == sorted(ids, reverse=True) and len(ids) == len(wanted)
        one = s.viewer.get(f"/api/v1/webhook-deliveries/{ids[0]}")
        assert one.status_code == 200 and one.json()["status"] == "DELIVERED"


# -- inbound hooks -----------------------------------------------------------------------------
@dataclass
class Hook:
    workflow: str
    secret: str
    version: str | None = None


def _signed(secret: str, body: bytes, msg_id: str, at: datetime | None = None) -> dict:
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def test_inbound_hook_starts_its_workflow_once(store_path):
    secret = new_secret()
    hooks = {
        "greeter": Hook("greet", secret, "1"),
        "plain": {"workflow": "greet", "secret": secret},
    }
    with served(store_path, hooks=hooks) as s, client(s.url) as anyone:
        body = json.dumps("nan").encode()
        r = anyone.post("/hooks/greeter", content=body, headers=_signed(secret, body, "msg_1"))
        assert r.status_code == 202, r.text
        accepted = r.json()
        assert accepted["created"] is True and accepted["workflow"] == "greet"
        assert r.headers["location"] == f"/api/v1/runs/{accepted['run_id']}"
        assert s.app.handle(accepted["run_id"]).result(timeout=20) == "HELLO NAN"
        run = s.app.get_run(accepted["run_id"])
        assert run.idempotency_key == "hook:greeter:msg_1"

        # the same message again (a fresh signature): the same run, not a second one
        again = anyone.post("/hooks/greeter", content=body, headers=_signed(secret, body, "msg_1"))
        assert again.status_code == 202, again.text
        assert again.json()["run_id"] == accepted["run_id"] and again.json()["created"] is False
        other = anyone.post("/hooks/plain", content=body, headers=_signed(secret, body, "msg_1"))
        assert other.status_code == 202 and other.json()["run_id"] != accepted["run_id"]
        assert len([r for r in s.app.runs() if r.workflow == "greet"]) == 2


def test_inbound_hook_refuses_bad_requests(tmp_path):
    secret = new_secret()
    with served(tmp_path / "baton.db", hooks={"greeter": Hook("greet", secret)}) as s:
        anyone = s.as_(None)
        body = json.dumps({"name": "x"}).encode()

        wrong = _signed(new_secret(), body, "m1")
        assert_problem(anyone.post("/hooks/greeter", content=body, headers=wrong), 401)
        r = anyone.post("/hooks/greeter", content=body, headers=_signed(secret, b"{}", "m1"))
        assert_problem(r, 401, "invalid-signature")
        stale = _signed(secret, body, "m2", datetime.now(UTC) - timedelta(minutes=10))
        r = anyone.post("/hooks/greeter", content=body, headers=stale)
        assert "old" in assert_problem(r, 401, "invalid-signature")["detail"]
        future = _signed(secret, body, "m3", datetime.now(UTC) + timedelta(minutes=10))
        assert_problem(anyone.post("/hooks/greeter", content=body, headers=future), 401)
        assert_problem(anyone.post("/hooks/greeter", content=body), 401, "invalid-signature")
        mangled = {**_signed(secret, body, "m4"), "webhook-signature": "garbage"}
        assert_problem(anyone.post("/hooks/greeter", content=body, headers=mangled), 401)
        r = anyone.post("/hooks/nobody", content=body, headers=_signed(secret, body, "m5"))
        assert_problem(r, 404, "hook-not-found")
        text = b"name=x"
        r = anyone.post("/hooks/greeter", content=text, headers=_signed(secret, text, "m6"))
        assert_problem(r, 400, "malformed-json")
        assert s.app.runs() == []

        # a bearer token is neither needed nor enough
        assert_problem(s.admin.post("/hooks/greeter", content=body), 401, "invalid-signature")
        doc = s.viewer.get("/api/v1/openapi.json").json()
        hook_op = doc["paths"]["/hooks/{name}"]["post"]
        assert hook_op["security"] == [] and "No bearer token" in hook_op["description"]


def test_outbound_signatures_verify_with_the_library():
    secret = new_secret()
    body = json.dumps({"id": "e1", "type": "t"})
    headers = signed_headers(secret, "e1", body)
    assert Webhook(secret).verify(body, headers) == {"id": "e1", "type": "t"}
    assert headers["webhook-id"] == "e1" and headers["webhook-signature"].startswith("v1,")
    with pytest.raises(ValueError):
        check_secret("whsec_!!!")


def test_deliverer_checks_its_options(tmp_path):
    app = baton.App(tmp_path / "b.db", worker=False)
    try:
        for bad in ({"poll_interval": 0}, {"timeout": -1}, {"concurrency": 0}, {"lease": 0}):
            with pytest.raises(ValueError):
                WebhookDeliverer(app, **bad)
        deliverer = WebhookDeliverer(app, poll_interval=0.05).start()
        assert deliverer.running
        with pytest.raises(RuntimeError):
            deliverer.start()
        deliverer.stop()
        deliverer.stop()
        assert not deliverer.running
    finally:
        app.shutdown(timeout=5)


def test_connection_errors_are_retried(tmp_path):
    with served(tmp_path / "baton.db") as s:
        r = s.admin.post(
            "/api/v1/webhooks",
            json={"url": "http://127.0.0.1:9/nothing", "event_types": ["baton.run.succeeded"]},
        )
        sub = r.json()
        retry = baton.Retry(max_attempts=2, initial=0.05, backoff=1, jitter=False)
        with delivering(s.app, retry=retry, timeout=2):
            run_greet(s, "max")

            def failed() -> dict | None:
                found = deliveries(s, sub["id"], status="FAILED")
                return found[0] if found else None

            gone = wait_until(failed, 30, "the delivery to fail")
        assert gone["attempts"] == 2 and gone["last_status"] is None
        assert "Connect" in gone["last_error"], gone
