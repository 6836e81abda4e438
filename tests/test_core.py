from __future__ import annotations

import asyncio
import random
import uuid

import pytest

import baton
from baton.core import serialization
from baton.core.events import CloudEvent
from baton.core.ids import new_id, uuid7
from baton.core.retry import backoff_delay


def test_uuid7_is_version_7_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(5000)]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert isinstance(new_id(), str)


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = baton.Retry(max_attempts=8, initial=0.5, backoff=2, max_delay=5, jitter=False)
    assert [policy.delay(n) for n in range(1, 8)] == [0.5, 1, 2, 4, 5, 5, 5]


def test_full_jitter_stays_under_the_ceiling_and_is_seeded() -> None:
    policy = baton.Retry(max_attempts=6, initial=1, backoff=3, max_delay=20, jitter=True)
    assert policy.delays(seed=7) == policy.delays(seed=7)
    assert policy.delays(seed=7) != policy.delays(seed=8)
    for n, d in enumerate(policy.delays(seed=1), start=1):
        assert 0 <= d <= min(20, 3 ** (n - 1))


def test_backoff_survives_huge_attempt_numbers() -> None:
    assert backoff_delay(10_000, 1.0, 10.0, 30.0, False) == 30.0
    assert 0 <= backoff_delay(10_000, 1.0, 10.0, 30.0, True, random.Random(1)) <= 30.0


def test_retry_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        baton.Retry(max_attempts=0)
    with pytest.raises(ValueError, match="backoff"):
        baton.Retry(backoff=0.5)


def test_non_retryable_classification() -> None:
    policy = baton.Retry(non_retryable=(KeyError,))
    assert not policy.is_retryable(KeyError("x"))
    assert not policy.is_retryable(baton.NonRetryableError("stop"))
    assert policy.is_retryable(RuntimeError("again"))


def test_serialization_error_names_the_json_path() -> None:
    import datetime

    with pytest.raises(baton.SerializationError) as info:
        serialization.dumps({"order": {"items": [1, {"when": datetime.date(2026, 1, 1)}]}})
    assert info.value.path == "$.order.items[1].when"
    assert info.value.type_name == "date"
    assert "$.order.items[1].when" in str(info.value)


def test_serialization_rejects_nan_and_odd_keys() -> None:
    with pytest.raises(baton.SerializationError, match=r"\$\.x"):
        serialization.dumps({"x": float("nan")})
    with pytest.raises(baton.SerializationError, match="key"):
        serialization.dumps({(1, 2): "tuple key"})


def test_serialization_names_a_container_that_holds_itself() -> None:
    loop: dict = {"items": []}
    loop["items"].append(loop)
    with pytest.raises(baton.SerializationError) as info:
        serialization.dumps(loop)
    assert info.value.path == "$.items[0]" and "contains itself" in str(info.value)
    # the encoder of this thread is sound after a failure
    assert serialization.dumps({"items": [1]}) == '{"items":[1]}'


def test_serialization_matches_the_json_module() -> None:
    import json
    import threading

    values = [
        {"a": 1, "b": [1, 2.5, "é", None, True]},
        "x\u2028y",
        10**30,
        -0.0,
        1e300,
        {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
        'quote"\\',
        [[], {}, [{}]],
    ]
    expected = [
        json.dumps(v, ensure_ascii=False, separators=(",", ":"), allow_nan=False) for v in values
    ]
    seen: list[list[str]] = []

    def encode_all() -> None:  # each thread has its own encoder
        seen.append([serialization.dumps(v) for v in values])

    threads = [threading.Thread(target=encode_all) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [serialization.dumps(v) for v in values] == expected
    assert seen == [expected] * 4


def test_args_hash_is_stable_and_sensitive() -> None:
    assert serialization.args_hash((1, "a"), {"k": 2}) == serialization.args_hash(
        (1, "a"), {"k": 2}
    )
    assert serialization.args_hash((1,), {}) != serialization.args_hash((2,), {})


def test_cloudevent_envelope() -> None:
    event = CloudEvent(
        type="baton.run.started",
        source="baton://h/1",
        subject="r1",
        correlationid="c1",
        runid="r1",
        time=0.0,
        data={"a": 1},
    )
    doc = event.to_dict()
    assert doc["specversion"] == "1.0"
    assert doc["time"] == "1970-01-01T00:00:00.000000Z"
    assert doc["correlationid"] == "c1" and doc["data"] == {"a": 1}
    assert uuid.UUID(doc["id"]).version == 7


def test_virtual_clock_wakes_sleepers_only_when_advanced() -> None:
    clock = baton.VirtualClock(start=100.0)

    async def scenario() -> list[str]:
        woke: list[str] = []

        async def sleeper(name: str, until: float) -> None:
            await clock.sleep_until(until)
            woke.append(name)

        tasks = [asyncio.create_task(sleeper("a", 110)), asyncio.create_task(sleeper("b", 130))]
        await asyncio.sleep(0.01)
        assert woke == []
        clock.advance(10)
        await asyncio.sleep(0.01)
        assert woke == ["a"]
        clock.advance(25)
        await asyncio.gather(*tasks)
        return woke

    assert asyncio.run(scenario()) == ["a", "b"]
    assert clock.now() == 135.0
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_virtual_clock_sleep_can_be_woken_early() -> None:
    clock = baton.VirtualClock()

    async def scenario() -> float:
        wake = asyncio.Event()
        asyncio.get_running_loop().call_later(0.01, wake.set)
        await clock.sleep_until(clock.now() + 3600, wake)
        return clock.now()

    assert asyncio.run(scenario()) == clock.now()


def test_virtual_clock_forgets_waiters_woken_early() -> None:
    """A dispatcher woken again and again while time stands still keeps no entry per wake."""

    async def scenario() -> tuple[int, bool]:
        clock = baton.VirtualClock(start=0.0)
        wake = asyncio.Event()
        for i in range(5000):
            sleeper = asyncio.create_task(clock.sleep_until(100.0 + i, wake))
            await asyncio.sleep(0)
            wake.set()
            await sleeper
            wake.clear()
        kept = len(clock._waiters)
        real = asyncio.create_task(clock.sleep_until(5.0))
        await asyncio.sleep(0)
        clock.set(6.0)
        await asyncio.wait_for(real, 5)
        return kept, real.done()

    kept, woke = asyncio.run(scenario())
    assert kept < 200
    assert woke
