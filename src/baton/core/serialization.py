"""JSON encoding of inputs, outputs and event data, with errors that name the JSON path."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from baton.core.errors import SerializationError

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decoder = json.JSONDecoder()


def dumps(value: Any, what: str = "value") -> str:
    """Encode `value`; raise SerializationError naming the first offending path."""
    try:
        return _encoder.encode(value)
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


def _find_bad(value: Any, path: str) -> tuple[str | None, str]:
    if value is None or isinstance(value, bool | int | str):
        return None, ""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return path, f"float ({value})"
        return None, ""
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            bad = _find_bad(item, f"{path}[{i}]")
            if bad[0] is not None:
                return bad
        return None, ""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool) and key is not None:
                return f"{path}{{key {key!r}}}", type(key).__name__
            bad = _find_bad(item, _child(path, key))
            if bad[0] is not None:
                return bad
        return None, ""
    return path, type(value).__name__


def _child(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key) if isinstance(key, str) else key}]"
