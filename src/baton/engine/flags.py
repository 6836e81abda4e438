"""Feature flags: values that workflows read and operators change at run time, no restart.

Flags live in the store's `flags` table, so every process on the store sees the same values.
`app.flags` reads them through a short cache (`TTL` seconds of the App's clock): reading a flag
in a hot loop costs a dictionary lookup, a change made through any App of this process on the
same store is seen at once, and a change made by another process within the TTL. A flag with
no stored value falls back to its registered default (`app.flags.defaults(...)`, which a node
fills from `flags:` in baton.yaml), then to the `default` given at the call.

Determinism: reading a flag in a workflow body is not checkpointed. A run that resumes after a
crash, a retry back-off or a sleep re-runs its workflow from the top and may read a different
value, so it may call different steps (a DivergenceError). Read a flag inside a step when the
value must stay the same for the whole run: the step's result is checkpointed.
"""

from __future__ import annotations

import copy
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from baton.core import serialization
from baton.core.clock import Clock
from baton.engine.execution import current
from baton.engine.registry import Registry
from baton.store.protocol import Store

TTL = 0.5  # seconds (by the App's clock) a read of the stored flags is reused

# a change made through any Flags object of this process invalidates the others on that store
_generations: dict[str, int] = {}
_generations_lock = threading.Lock()
# the Flags of each App, by its registry: what `baton.flag()` finds from a running execution
_by_registry: weakref.WeakKeyDictionary[Registry, Flags] = weakref.WeakKeyDictionary()


class Flags:
    """An App's feature flags (`app.flags`)."""

    def __init__(
        self, store: Store, clock: Clock, source: str, registry: Registry | None = None
    ) -> None:
        self._store = store
        self._clock = clock
        self._source = source
        self._defaults: dict[str, Any] = {}
        self._lock = threading.Lock()
        # (stored values, clock time read, generation read): replaced whole, read without a lock
        self._cache: tuple[dict[str, Any], float, int] | None = None
        if registry is not None:
            _by_registry[registry] = self

    # -- reading -----------------------------------------------------------------------------
    def get(self, name: str, default: Any = None) -> Any:
        """Flag `name`: its stored value, else its registered default, else `default`."""
        stored = self._stored()
        if name in stored:
            return _copy(stored[name])
        if name in self._defaults:
            return _copy(self._defaults[name])
        return default

    def all(self) -> dict[str, Any]:
        """Every flag: the registered defaults, with the stored values over them."""
        return copy.deepcopy({**self._defaults, **self._stored()})

    def defaults(self, mapping: Mapping[str, Any]) -> None:
        """Register default values (added to, and replacing, earlier ones by name). They are
        not stored: each process registers its own, and a stored value wins over them."""
        for name in mapping:
            _check_name(name)
        encoded = {name: _encode(name, value) for name, value in mapping.items()}
        # keep a private copy, as it comes back from JSON: no caller can change it later
        self._defaults.update({name: serialization.loads(text) for name, text in encoded.items()})

    # -- changing ----------------------------------------------------------------------------
    def set(self, name: str, value: Any, by: str | None = None) -> None:
        """Store `value` (anything JSON-serializable) as flag `name`, for every process on the
        store. `by` says who changed it (kept with the flag and on its event)."""
        _check_name(name)
        text = _encode(name, value)
        self._store.set_flag(name, text, self._clock.now(), by, self._source).result()
        self._invalidate()

    def delete(self, name: str, by: str | None = None) -> bool:
        """Remove flag `name`'s stored value (its default applies again); False if it had
        none."""
        _check_name(name)
        removed = self._store.delete_flag(name, self._clock.now(), by, self._source).result()
        self._invalidate()
        return removed

    # -- the cache ---------------------------------------------------------------------------
    def _stored(self) -> dict[str, Any]:
        """The stored values, read again once the cache is TTL old or a change was made."""
        now = self._clock.now()
        generation = _generations.get(self._store.location, 0)
        cache = self._cache
        if _fresh(cache, now, generation):
            return cache[0]  # type: ignore[index]
        with self._lock:
            cache = self._cache  # another thread may have read them meanwhile
            if _fresh(cache, now, generation):
                return cache[0]  # type: ignore[index]
            stored = self._store.list_flags()
            values = {name: serialization.loads(text) for name, text in stored.items()}
            self._cache = (values, now, generation)
        return values

    def _invalidate(self) -> None:
        with _generations_lock:
            location = self._store.location
            _generations[location] = _generations.get(location, 0) + 1


def flag(name: str, default: Any = None) -> Any:
    """Flag `name` of the App running this workflow or step (see `Flags.get`).

    Outside a run (a step called as a plain function, as in a unit test) it returns `default`;
    use `app.flags.get()` there. Not checkpointed: read it inside a step when its value must
    stay the same across a resume.
    """
    ex = current.get()
    if ex is None:
        return default
    flags = _by_registry.get(ex.rt.registry)
    if flags is None:
        return default
    return flags.get(name, default)


def _fresh(cache: tuple[dict[str, Any], float, int] | None, now: float, generation: int) -> bool:
    if cache is None:
        return False
    _, read_at, seen = cache
    return seen == generation and read_at <= now < read_at + TTL


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a flag needs a non-empty name, got {name!r}")


def _encode(name: Any, value: Any) -> str:
    return serialization.dumps(value, f"value of flag {name!r}")


def _copy(value: Any) -> Any:
    """Containers are copied: a caller changing what it got cannot change the cache."""
    return copy.deepcopy(value) if isinstance(value, dict | list) else value
