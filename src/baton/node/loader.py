"""Finding the App a node serves: `module:attribute`, imported with the working directory on
sys.path, and the store it should use.

The attribute is a `baton.App`, or a function called with no arguments that returns one. When
the node's configuration names a store, BATON_STORE is set to it before the import, so an App
created without a store (`baton.App()`) opens that one; an App that opened another store is
refused rather than silently served on the wrong data.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from baton.engine.app import App


class AppNotLoaded(Exception):
    """The App named by `module:attribute` cannot be had; the message says why."""


def load_app(spec: str, store: str | None = None) -> App:
    """The App `spec` names; with `store`, BATON_STORE is set to it first (see above)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppNotLoaded(f"{spec!r} is not module:attribute (for example myproject.flows:app)")
    if store is not None:
        os.environ["BATON_STORE"] = store
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise AppNotLoaded(
                f"cannot import {module_name!r}: no module named {exc.name!r} "
                f"(looked in {cwd} and the installed packages)"
            ) from None
        raise AppNotLoaded(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    except Exception as exc:  # the user's code raised while importing: say what and where
        raise AppNotLoaded(f"importing {module_name!r} failed: {_describe(exc)}") from exc
    target: Any = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise AppNotLoaded(f"module {module_name!r} has no attribute {attribute!r}")
        target = getattr(target, part)
    if callable(target) and not isinstance(target, App):
        try:
            target = target()
        except Exception as exc:
            raise AppNotLoaded(f"calling {spec} failed: {_describe(exc)}") from exc
    if not isinstance(target, App):
        raise AppNotLoaded(
            f"{spec} is {type(target).__name__}, not a baton.App (or a function returning one)"
        )
    return target


def same_store(opened: Any, location: str) -> bool:
    """Whether the opened store is the one `location` names (SQLite: the same file)."""
    path = getattr(opened, "path", None)
    if path is not None:
        text = location.removeprefix("sqlite://").removeprefix("/")
        if location.startswith("sqlite://") or "://" not in location:
            return Path(text).expanduser().resolve() == Path(path).resolve()
        return False
    return getattr(opened, "location", None) == shown(location)


def shown(location: str) -> str:
    """A location as a store shows it (a PostgreSQL password masked)."""
    if location.startswith(("postgresql://", "postgres://")):
        from baton.store.postgres.url import parse

        return parse(location).shown
    return location


def _describe(exc: BaseException) -> str:
    frames = exc.__traceback__
    where = ""
    while frames is not None:  # the innermost frame: the line of the user's code that raised
        where = f" ({frames.tb_frame.f_code.co_filename}:{frames.tb_lineno})"
        frames = frames.tb_next
    return f"{type(exc).__name__}: {exc}{where}"
