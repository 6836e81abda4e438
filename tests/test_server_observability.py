"""/metrics over HTTP, and a request's traceparent carried onto the run it starts."""

from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

import baton
from baton.server import create_api
from serverkit import client, serving


def _app(path: str) -> baton.App:
    app = baton.App(store=path)

    @app.step()
    def double(x: int) -> int:
        return x * 2

    @app.workflow(name="doubler")
    def doubler(x: int) -> int:
        return double(x)

    return app


def _sample(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_route_counts_runs_and_reads_gauges_from_the_store(sqlite_path: str) -> None:
    app = _app(sqlite_path)
    try:
        with serving(create_api(app)) as url, client(url) as http:
            before = _sample(
                http.get("/metrics").text, "baton_runs_started_total", workflow="doubler"
            )
            run_id = http.post("/api/v1/runs", json={"workflow": "doubler", "input": 2}).json()[
                "run_id"
            ]
            assert app.handle(run_id).result(timeout=10) == 4
            deadline = time.monotonic() + 10
            while True:  # the counter moves just after the run's end is stored
                scraped = http.get("/metrics")
                text = scraped.text
                if _sample(text, "baton_runs_finished_total", workflow="doubler") >= 1:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert scraped.headers["content-type"].startswith("text/plain")
            assert _sample(text, "baton_runs_started_total", workflow="doubler") >= before + 1
            assert _sample(text, "baton_runs", status="SUCCEEDED") >= 1
            assert "baton_step_duration_seconds_bucket" in text
    finally:
        app.shutdown()


def test_metrics_needs_a_token_when_tokens_are_set(sqlite_path: str) -> None:
    from dataclasses import dataclass

    from baton.core.roles import Role

    @dataclass
    class Tok:
        name: str
        token: str
        role: Role

    app = _app(sqlite_path)
    try:
        api = create_api(app, tokens=[Tok("prom", "scrape-me", Role.VIEWER)])
        with serving(api) as url:
            with client(url) as anonymous:
                assert anonymous.get("/metrics").status_code == 401
            with client(url, "scrape-me") as viewer:
                assert viewer.get("/metrics").status_code == 200
    finally:
        app.shutdown()


def test_a_request_traceparent_is_stored_on_the_run(sqlite_path: str) -> None:
    app = _app(sqlite_path)
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    try:
        with serving(create_api(app)) as url, client(url) as http:
            made = http.post(
                "/api/v1/runs",
                json={"workflow": "doubler", "input": 1},
                headers={"traceparent": parent},
            ).json()
            assert made["traceparent"].split("-")[1] == trace_id
            plain = http.post("/api/v1/runs", json={"workflow": "doubler", "input": 1}).json()
            assert plain["traceparent"].split("-")[1] != trace_id
    finally:
        app.shutdown()
