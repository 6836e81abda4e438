"""The layers a node's configuration is built from, and where each value came from.

`Layers` holds plain data (dicts, lists, scalars) together with the position of every key
and value: a line and column of baton.yaml, or the environment variable or override that set
it. Errors found later (by validation, or when overrides meet the App) are reported there.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from baton.core.errors import ConfigError

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Where:
    """A position: a file with a 1-based line and column, or a source with none (0:0)."""

    path: str
    line: int = 0
    col: int = 0

    def error(self, field: Loc | str, problem: str) -> ConfigError:
        name = field if isinstance(field, str) else dotted(field)
        return ConfigError(problem, path=self.path, line=self.line, col=self.col, field=name)


class Layers:
    """Configuration data and the position of each key and value in it."""

    def __init__(self, data: dict[str, Any], root: Where) -> None:
        self.data = data
        self.root = root
        self.keys: dict[Loc, Where] = {}
        self.values: dict[Loc, Where] = {}
        self.origins: dict[Loc, Loc] = {}  # merged subtrees: where they are written in the file
        self.broken: set[Loc] = set()  # values already reported (a failed ${VAR})

    def key_at(self, loc: Loc) -> Where:
        """Where the key `loc` is written (else its nearest enclosing value)."""
        return self.keys.get(loc) or self.value_at(loc)

    def value_at(self, loc: Loc) -> Where:
        """Where the value at `loc` is written, or the nearest enclosing value's position."""
        while loc:
            if loc in self.values:
                return self.values[loc]
            loc = loc[:-1]
        return self.root

    def written(self, loc: Loc) -> Loc:
        """The key path as written: ("workers", "x") set by the production overlay is
        ("environments", "production", "workers", "x")."""
        for n in range(len(loc), 0, -1):
            if loc[:n] in self.origins:
                return (*self.origins[loc[:n]], *loc[n:])
        return loc

    def get(self, loc: Loc, default: Any = None) -> Any:
        node: Any = self.data
        for part in loc:
            if not has(node, part):
                return default
            node = node[part]
        return node

    def set(self, loc: Loc, value: Any, where: Where) -> None:
        """Put `value` at `loc` (creating mappings on the way), replacing what was there."""
        node = self.data
        for i, part in enumerate(loc[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
                self.values[loc[: i + 1]] = where
            elif not isinstance(child, dict):
                raise where.error(loc, f"cannot be set: {dotted(loc[: i + 1])} is not a mapping")
            node = child
        self.forget(loc)
        node[loc[-1]] = value
        self.keys[loc] = self.values[loc] = where

    def merge(self, overlay: Any, source: Loc, into: Loc = ()) -> None:
        """Deep-merge the subtree at `source` (e.g. an environment's overlay) over `into`:
        mappings merge key by key, anything else replaces. Positions come along."""
        target = self.get(into) if into else self.data
        for key, value in overlay.items():
            here, there = (*into, key), (*source, key)
            if isinstance(value, dict) and isinstance(target.get(key), dict):
                self.merge(value, there, here)
                continue
            self.forget(here)
            target[key] = value
            self._copy_positions(there, here)
            self.origins[here] = there

    def forget(self, loc: Loc) -> None:
        """Drop the positions at and under `loc` (its value is being replaced)."""
        n = len(loc)
        for table in (self.keys, self.values, self.origins):
            for old in [k for k in table if k[:n] == loc]:
                del table[old]

    def _copy_positions(self, source: Loc, into: Loc) -> None:
        n = len(source)
        for table in (self.keys, self.values):
            for old, where in list(table.items()):
                if old[:n] == source:
                    table[(*into, *old[n:])] = where


def has(node: Any, part: str | int) -> bool:
    """Whether `node[part]` is there (a mapping's key, or a list's index)."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def dotted(loc: Loc) -> str:
    """("server", "tokens", 0, "role") -> "server.tokens[0].role"."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- reading baton.yaml ------------------------------------------------------------------------
def read_yaml(path: str) -> Layers:
    """The file's data and positions; a ConfigError for a file that cannot be read, YAML that
    does not parse (with the line and column), duplicate keys, or a top level that is not a
    mapping."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise ConfigError("no such file", path=path) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a configuration file", path=path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot be read: {exc}", path=path) from None
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        raise _syntax_error(path, exc) from None
    except YAMLError as exc:
        raise ConfigError(f"YAML error: {exc}", path=path, line=1, col=1) from None
    root = Where(path, 1, 1)
    if doc is None:
        return Layers({}, root)
    if not isinstance(doc, CommentedMap):
        raise root.error("", f"the top level must be a mapping of keys, not {_kind(doc)}")
    layers = Layers({}, root)
    errors: list[ConfigError] = []
    layers.data = _plain(doc, (), path, layers, errors)
    if errors:
        raise ConfigError.combine(errors)
    return layers


def _syntax_error(path: str, exc: MarkedYAMLError) -> ConfigError:
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and "duplicate key" not in exc.problem:
        problem = f"{exc.context}, {exc.problem}"
    if "duplicate key" in problem and exc.context_mark is not None:
        problem = problem.split(" with value")[0]
        problem += f" (first defined at line {exc.context_mark.line + 1})"
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    return ConfigError(f"invalid YAML: {problem}", path=path, line=line, col=col)


def _plain(node: Any, loc: Loc, path: str, layers: Layers, errors: list[ConfigError]) -> Any:
    """`node` as plain data (dict, list, str, int, float, bool, None), recording positions."""
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            kline, kcol = _pos(node.lc.key, key, node)
            vline, vcol = _pos(node.lc.value, key, node)
            if not isinstance(key, str):
                errors.append(Where(path, kline, kcol).error(loc, f"key {key!r} must be a string"))
                continue
            here = (*loc, key)
            layers.keys[here] = Where(path, kline, kcol)
            layers.values[here] = Where(path, vline, vcol)
            out[key] = _plain(value, here, path, layers, errors)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            line, col = _pos(node.lc.item, i, node)
            layers.values[(*loc, i)] = Where(path, line, col)
            items.append(_plain(value, (*loc, i), path, layers, errors))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    if isinstance(node, dt.date):  # a YAML timestamp (dates and datetimes): as ISO 8601 text
        return node.isoformat()
    kind = type(node).__name__.removeprefix("Commented").lower()
    problem = f"a YAML {kind} is not supported: use a mapping, list or scalar"
    errors.append(layers.value_at(loc).error(loc, problem))
    return None


def _pos(lookup: Callable[[Any], Any], key: Any, parent: Any) -> tuple[int, int]:
    try:
        line, col = lookup(key)
    except (KeyError, IndexError, TypeError):  # merged (<<) keys have no position of their own
        line, col = parent.lc.line, parent.lc.col
    return line + 1, col + 1


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


# -- ${VAR} interpolation ----------------------------------------------------------------------
_REF = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(
    layers: Layers, loc: Loc, environ: Mapping[str, str], errors: list[ConfigError]
) -> None:
    """Replace `${VAR}` and `${VAR:-default}` in every string under `loc` with the
    environment's value (`:-` also covers a variable that is set but empty); `$${` stands for
    a literal `${`. A missing variable without a default is an error at its value."""
    node = layers.get(loc)
    if isinstance(node, dict):
        for key in list(node):
            interpolate(layers, (*loc, key), environ, errors)
    elif isinstance(node, list):
        for i in range(len(node)):
            interpolate(layers, (*loc, i), environ, errors)
    elif isinstance(node, str) and "${" in node:
        try:
            value = substitute(node, environ)
        except ValueError as exc:
            errors.append(layers.value_at(loc).error(loc, str(exc)))
            layers.broken.add(loc)
            return
        parent = layers.get(loc[:-1]) if len(loc) > 1 else layers.data
        parent[loc[-1]] = value


def substitute(text: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        inner = match.group(1)
        if inner is None:
            raise ValueError("unclosed ${ (write $${ for a literal ${)")
        name, has_default, default = inner.partition(":-")
        if not _NAME.fullmatch(name):
            raise ValueError(f"${{{inner}}} does not name an environment variable")
        value = environ.get(name)
        if has_default and not value:
            return default
        if value is None:
            raise ValueError(
                f"environment variable {name} is not set (write ${{{name}:-default}} "
                f"to give a default)"
            )
        return value

    return _REF.sub(replace, text)
