"""The pure parts of the supervisor: graph checks, back-off, tick grid, redaction."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, SecretStr

from baton.agents import DependencyCycle, RestartPolicy, UnknownDependency
from baton.agents.graph import check, dependents, find_cycle, start_order
from baton.agents.looping import next_tick
from baton.core.redact import MASK, redact


def test_start_order_puts_dependencies_first_and_keeps_registration_order() -> None:
    graph = {"api": ["db", "cache"], "cache": ["db"], "db": [], "ui": ["api"], "cron": []}
    assert start_order(graph) == ["db", "cache", "api", "ui", "cron"]
    assert dependents(graph)["db"] == ["api", "cache"]


def test_cycles_are_spelled_out() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": [], "a": ["b"], "b": ["b"]}) == ["b", "b"]
    assert find_cycle({"a": ["b"], "b": []}) is None
    with pytest.raises(DependencyCycle, match="b -> c -> b"):
        check({"a": ["b"], "b": ["c"], "c": ["b"]})
    with pytest.raises(UnknownDependency, match="'a' depends on 'zz'"):
        check({"a": ["zz"]})


def test_restart_back_off_grows_and_is_capped() -> None:
    policy = RestartPolicy(initial_delay=0.1, backoff=2, max_delay=0.5)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    jittered = RestartPolicy(initial_delay=1, jitter=True)
    assert all(0 <= jittered.delay(3) <= 4 for _ in range(50))
    assert RestartPolicy.coerce("always").when == "always"
    assert RestartPolicy.coerce(None).when == "never"


def test_ticks_stay_on_the_grid_and_count_what_an_overrun_skipped() -> None:
    assert next_tick(10.0, 1.0, now=10.3) == (11.0, 0)  # work took 0.3 s: no drift
    assert next_tick(10.0, 1.0, now=11.0) == (11.0, 0)
    assert next_tick(10.0, 1.0, now=11.2) == (12.0, 1)  # one tick overrun: skipped, no burst
    assert next_tick(10.0, 1.0, now=13.5) == (14.0, 3)


class Inner(BaseModel):
    token: str = "t"
    host: str = "h"


class Settings(BaseModel):
    api_key: str = "k"
    password: SecretStr = SecretStr("p")
    plain: SecretStr = SecretStr("s")
    nested: Inner = Inner()
    servers: list[dict[str, str]] = [{"credential": "c", "name": "n"}]
    port: int = 5432


def test_redaction_masks_secret_types_and_secret_sounding_keys_at_any_depth() -> None:
    assert redact(Settings()) == {
        "api_key": MASK,
        "password": MASK,
        "plain": MASK,
        "nested": {"token": MASK, "host": "h"},
        "servers": [{"credential": MASK, "name": "n"}],
        "port": 5432,
    }
