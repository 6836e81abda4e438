"""UUIDv7 identifiers: time-ordered, so runs and events sort by creation."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid

_lock = threading.Lock()
_random = random.Random(random.SystemRandom().getrandbits(128))  # seeded from the OS, fast


def _reseed() -> None:
    _random.seed(random.SystemRandom().getrandbits(128))


os.register_at_fork(after_in_child=_reseed)  # a forked child must not repeat our ids
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A RFC 9562 version-7 UUID, monotonic within this process."""
    return uuid.UUID(int=_uuid7_int())


def _uuid7_int() -> int:
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms = ms
            _counter = _random.getrandbits(10)  # random start, leaving room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # 12-bit counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            ms = _last_ms
        rand_b = _random.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= _counter << 64
    value |= 0b10 << 62
    value |= rand_b
    return value


def new_id() -> str:
    """A new UUIDv7 as a string, the form stored everywhere (`str(uuid7())`, made directly)."""
    h = f"{_uuid7_int():032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
