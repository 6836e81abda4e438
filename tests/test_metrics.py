"""Prometheus metrics after real runs on real stores (SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

import baton
from agents_kit import WAIT, Quick
from baton.agents import Orchestrator, RestartPolicy, RunMode
from baton.observability import metrics
from baton.store.records import RunStatus
from conftest import wait_until

FAST = baton.Retry(max_attempts=2, initial=0.01, backoff=1.0, jitter=False)


def _value(name: str, **labels: str) -> float:
    """A sample of Baton's registry (0 when it was never counted)."""
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _counted(name: str, expected: float, **labels: str) -> None:
    """A run's end is counted just after it commits, so a moment after `result()` sees it."""
    wait_until(lambda: _value(name, **labels) == expected, timeout=5, what=f"{name}{labels}")
    assert _value(name, **labels) == expected


def _unique(prefix: str) -> str:
    """Counters are per process and tests share workers: each test counts its own names."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _parse(body: bytes) -> dict[str, dict[tuple, float]]:
    """{metric family: {sorted label items: value}} from an exposition."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[key] = sample.value
    return out


def test_runs_steps_and_retries_are_counted(make_app):
    app = make_app()
    ok, bad, dead = _unique("ok"), _unique("bad"), _unique("dead")
    flaky_calls: list[int] = []

    @app.step()
    def one(x: int) -> int:
        return x + 1

    @app.step()
    def two(x: int) -> int:
        return x * 2

    @app.step(retry=FAST)
    def flaky(x: int) -> int:
        flaky_calls.append(x)
        if len(flaky_calls) == 1:
            raise ConnectionError("first attempt fails")
        return x

    @app.step(retry=FAST)
    def broken() -> None:
        raise ConnectionError("always down")

    @app.workflow(name=ok)
    def succeeds(x: int) -> int:
        return flaky(two(one(x)))

    @app.workflow(name=bad)
    def fails() -> None:
        raise ValueError("not retried: the workflow itself fails")

    @app.workflow(name=dead)
    def dies() -> None:
        broken()

    assert app.run(ok, 1) == 4
    with pytest.raises(baton.RunFailed):
        app.run(bad)
    handle = app.start(dead)
    with pytest.raises(baton.RunFailed):
        handle.result(timeout=10)
    assert app.get_run(handle.id).status == RunStatus.DEAD

    for wf in (ok, bad, dead):
        assert _value("baton_runs_started_total", workflow=wf) == 1
    _counted("baton_runs_finished_total", 1, workflow=ok, status="SUCCEEDED")
    _counted("baton_runs_finished_total", 1, workflow=bad, status="FAILED")
    _counted("baton_runs_finished_total", 1, workflow=dead, status="DEAD")
    assert _value("baton_runs_failed_total", workflow=ok) == 0
    _counted("baton_runs_failed_total", 1, workflow=bad)
    _counted("baton_runs_failed_total", 1, workflow=dead)

    # the histogram saw every attempt: one each for one/two, two for flaky and broken
    for fn, attempts in ((one, 1), (two, 1), (flaky, 2)):
        labels = {"workflow": ok, "step": fn.step.name}
        assert _value("baton_step_duration_seconds_count", **labels) == attempts
        assert _value("baton_step_duration_seconds_sum", **labels) > 0
        # the smallest bucket is 0.5 ms, the largest finite one 60 s
        assert _value("baton_step_duration_seconds_bucket", le="60.0", **labels) == attempts
    broken_labels = {"workflow": dead, "step": broken.step.name}
    assert _value("baton_step_duration_seconds_count", **broken_labels) == 2
    assert _value("baton_step_retries_total", workflow=ok, step=flaky.step.name) == 1
    assert _value("baton_step_retries_total", workflow=dead, step=broken.step.name) == 1
    assert _value("baton_step_retries_total", workflow=ok, step=one.step.name) == 0


def test_async_workflows_and_gathers_are_counted(make_app):
    app = make_app()
    wf = _unique("fan")

    @app.step()
    async def price(sku: str) -> int:
        return len(sku)

    @app.workflow(name=wf)
    async def quote(skus: list[str]) -> int:
        a, b = await baton.gather(price(skus[0]), price.defer(skus[1]))
        return a + b

    assert app.run(wf, ["tea", "mugs"]) == 7
    assert _value("baton_runs_started_total", workflow=wf) == 1
    _counted("baton_runs_finished_total", 1, workflow=wf, status="SUCCEEDED")
    labels = {"workflow": wf, "step": price.step.name}
    assert _value("baton_step_duration_seconds_count", **labels) == 2


def test_a_run_that_waits_counts_as_started_once(make_app):
    clock = baton.VirtualClock()
    app = make_app(clock=clock)
    wf = _unique("nap")

    @app.workflow(name=wf)
    def nap() -> str:
        baton.sleep(60)
        return "up"

    handle = app.start(wf)
    wait_until(lambda: app.get_run(handle.id).status == RunStatus.WAITING, what="WAITING")
    clock.advance(61)
    assert handle.result(timeout=10) == "up"
    assert app.get_run(handle.id).attempt == 2  # claimed twice, started once
    assert _value("baton_runs_started_total", workflow=wf) == 1
    _counted("baton_runs_finished_total", 1, workflow=wf, status="SUCCEEDED")


def test_compensated_runs_are_counted(make_app):
    app = make_app()
    wf = _unique("saga")
    undone: list[str] = []

    @app.step()
    def refund(order: str) -> None:
        undone.append(order)

    @app.step(compensate=refund)
    def charge(order: str) -> str:
        return f"charged {order}"

    @app.workflow(name=wf)
    def checkout(order: str) -> None:
        charge(order)
        raise ValueError("out of stock")

    handle = app.start(wf, "o-1")
    wait_until(lambda: app.get_run(handle.id).status == RunStatus.COMPENSATED, what="COMPENSATED")
    assert undone == ["o-1"]
    assert _value("baton_runs_started_total", workflow=wf) == 1
    _counted("baton_runs_finished_total", 1, workflow=wf, status="COMPENSATED")
    _counted("baton_runs_finished_total", 0, workflow=wf, status="FAILED")


def test_queue_depth_runs_and_dlq_gauges_come_from_the_store(make_app):
    app = make_app(queues=["default"])  # runs of other queues stay ENQUEUED
    dead = _unique("dead")

    @app.step(retry=baton.Retry(max_attempts=1))
    def broken() -> None:
        raise ConnectionError("down")

    @app.workflow(name=dead)
    def dies() -> None:
        broken()

    @app.workflow()
    def parked() -> None:
        pass

    handle = app.start(dead)
    with pytest.raises(baton.RunFailed):
        handle.result(timeout=10)
    for _ in range(2):
        app.start(parked, queue="emails")
    app.start(parked, queue="reports")
    _counted("baton_runs_finished_total", 1, workflow=dead, status="DEAD")

    body, content_type = metrics.render(app.store)
    assert content_type.startswith("text/plain")
    samples = _parse(body)
    assert samples["baton_queue_depth"] == {
        (("queue", "emails"),): 2.0,
        (("queue", "reports"),): 1.0,
    }
    assert samples["baton_runs"][(("status", "ENQUEUED"),)] == 3.0
    assert samples["baton_runs"][(("status", "DEAD"),)] == 1.0
    assert samples["baton_dlq_size"][()] == 1.0
    # the counters are in the same exposition
    assert samples["baton_runs_finished_total"][(("status", "DEAD"), ("workflow", dead))] == 1.0
    assert app.store.queue_depths() == {"emails": 2, "reports": 1}


def test_register_store_exposes_its_gauges_without_passing_it(make_app):
    app = make_app(worker=False)

    @app.workflow()
    def parked() -> None:
        pass

    app.start(parked, queue="q1")
    assert "baton_queue_depth" not in _parse(metrics.render()[0])
    metrics.register_store(app.store)
    try:
        samples = _parse(metrics.render()[0])
        assert samples["baton_queue_depth"] == {(("queue", "q1"),): 1.0}
        assert samples["baton_dlq_size"][()] == 0.0
        # the registered store is not exposed twice when passed as well
        body = metrics.render(app.store)[0].decode()
        assert body.count("# TYPE baton_queue_depth gauge") == 1
    finally:
        metrics.unregister_store(app.store)
    assert "baton_queue_depth" not in _parse(metrics.render()[0])


class _Unreachable:
    def count_runs(self, status=None):
        raise baton.StoreError("the store is away")

    def queue_depths(self):
        raise AssertionError("not reached")


def test_a_store_that_cannot_answer_leaves_only_its_gauges_out():
    metrics.webhook_delivery("delivered")  # something to scrape besides the gauges
    samples = _parse(metrics.render(_Unreachable())[0])
    assert "baton_queue_depth" not in samples and "baton_dlq_size" not in samples
    assert "baton_webhook_deliveries_total" in samples


def test_agent_restarts_are_counted():
    name = _unique("flaky-agent")
    orch = Orchestrator(run_mode=RunMode.STOP_ON_EMPTY)
    policy = RestartPolicy(max_restarts=2, window=600, initial_delay=0)
    orch.register_agent(Quick, name, config={"fail": True}, restart=policy)
    orch.start()
    try:
        assert orch.join(WAIT)
    finally:
        orch.shutdown(timeout=2.0)
    assert _value("baton_agent_restarts_total", agent=name) == 2


def test_webhook_deliveries_are_counted_by_result():
    before = {
        r: _value("baton_webhook_deliveries_total", result=r) for r in metrics.WEBHOOK_RESULTS
    }
    metrics.webhook_delivery("delivered")
    metrics.webhook_delivery("retrying")
    metrics.webhook_delivery("retrying")
    metrics.webhook_delivery("failed")
    after = {r: _value("baton_webhook_deliveries_total", result=r) for r in metrics.WEBHOOK_RESULTS}
    assert {r: after[r] - before[r] for r in after} == {
        "delivered": 1,
        "retrying": 2,
        "failed": 1,
    }
    with pytest.raises(ValueError, match="delivered"):
        metrics.webhook_delivery("lost")


def test_the_exposition_parses_and_names_every_metric():
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    types = {f.name: f.type for f in text_string_to_metric_families(body.decode())}
    assert types["baton_runs_started"] == "counter"
    assert types["baton_runs_finished"] == "counter"
    assert types["baton_runs_failed"] == "counter"
    assert types["baton_step_duration_seconds"] == "histogram"
    assert types["baton_step_retries"] == "counter"
    assert types["baton_agent_restarts"] == "counter"
    assert types["baton_webhook_deliveries"] == "counter"
    assert metrics.STEP_BUCKETS[0] == 0.0005 and metrics.STEP_BUCKETS[-1] == 60.0
