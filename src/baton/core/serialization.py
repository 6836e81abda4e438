"""JSON encoding of inputs, outputs and event data, with errors that name the JSON path."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from typing import Any

from baton.core.errors import SerializationError

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decoder = json.JSONDecoder()
_local = threading.local()


def _refuse(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _c_encoder() -> Callable[[Any, int], Any] | None:
    """The C encoder `_encoder.encode` builds on every call, built once for this thread (its
    circular-reference marks are its own). None where the C accelerator is missing."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    args = ({}, _refuse, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    try:
        return make(*args)  # type: ignore[no-any-return]
    except TypeError:  # another signature: keep to the public path
        return None


def _encode(value: Any) -> str:
    try:
        fast = _local.encoder
    except AttributeError:
        fast = _local.encoder = _c_encoder()
    if fast is None:
        return _encoder.encode(value)
    try:
        return "".join(fast(value, 0))
    except BaseException:
        _local.encoder = _c_encoder()  # marks left by the failed call go with it
        raise


def dumps(value: Any, what: str = "value") -> str:
    """Encode `value`; raise SerializationError naming the first offending path."""
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        path, type_name = _find_bad(value, "$")
        if path is None:
            raise SerializationError("$", type(exc).__name__, what) from exc
        raise SerializationError(path, type_name, what) from None


def loads(text: str | None) -> Any:
    if text is None:
        return None
    return _decoder.decode(text)


def args_hash(args: tuple, kwargs: dict) -> str:
    """A short, stable digest of a step's arguments (for divergence checks)."""
    payload = dumps([list(args), kwargs], "step arguments")
    return hashlib.blake2b(payload.encode(), digest_size=8).hexdigest()


def _find_bad(
    value: Any, path: str, within: frozenset[int] = frozenset()
) -> tuple[str | None, str]:
    """The path of the first value that does not encode (`within`: the ids of the containers
    enclosing this one, so that a container holding itself is named, not recursed into)."""
    if value is None or isinstance(value, bool | int | str):
        return None, ""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, f"float ({value})"
        return None, ""
    if isinstance(value, list | tuple | dict):
        if id(value) in within:
            return path, f"{type(value).__name__} (one that contains itself)"
        within = within | {id(value)}
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            bad = _find_bad(item, f"{path}[{i}]", within)
            if bad[0] is not None:
                return bad
        return None, ""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path}{{key {key!r}}}", type(key).__name__
            bad = _find_bad(item, _child(path, key), within)
            if bad[0] is not None:
                return bad
        return None, ""
    return path, type(value).__name__


def _child(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key) if isinstance(key, str) else key}]"
