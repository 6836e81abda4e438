"""Exceptions to stored error documents and back, without pickle."""

from __future__ import annotations

import importlib
import traceback
from typing import Any

from baton.core import serialization
from baton.core.errors import BatonError, SerializationError, StepFailed


def describe(
    exc: BaseException, step: str | None = None, attempts: int | None = None
) -> dict[str, Any]:
    cls = type(exc)
    doc: dict[str, Any] = {
        "type": cls.__qualname__
        if cls.__module__ == "builtins"
        else f"{cls.__module__}.{cls.__qualname__}",
        "message": str(exc),
        "module": cls.__module__,
        "qualname": cls.__qualname__,
        "traceback": "".join(traceback.format_exception(exc)),
    }
    try:
        serialization.dumps(list(exc.args))
        doc["args"] = list(exc.args)
    except SerializationError:
        pass
    fields = {k: v for k, v in vars(exc).items() if not k.startswith("_")}
    if fields:
        try:
            serialization.dumps(fields)
            doc["fields"] = fields
        except SerializationError:
            pass
    if step is not None:
        doc["step"] = step
    if attempts is not None:
        doc["attempts"] = attempts
    return doc


def rebuild(doc: dict[str, Any]) -> BaseException:
    """The recorded exception again, as its own class when that class can be rebuilt."""
    step = doc.get("step") or "?"
    try:
        cls: Any = importlib.import_module(doc["module"])
        for part in doc["qualname"].split("."):
            cls = getattr(cls, part)
        if isinstance(cls, type) and issubclass(cls, Exception) and "args" in doc:
            try:
                exc = cls(*doc["args"])
                if str(exc) == doc.get("message"):
                    return exc
            except Exception:
                pass
            if issubclass(cls, BatonError) and "fields" in doc:
                # Baton's errors take their fields, not their message: restore both as recorded
                exc = cls.__new__(cls)
                Exception.__init__(exc, *doc["args"])
                exc.__dict__.update(doc["fields"])
                return exc
    except Exception:
        pass
    return StepFailed(step, doc.get("type", "Exception"), doc.get("message", ""))
