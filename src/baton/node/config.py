"""`baton.yaml`: a node's configuration, validated, with every error at its file:line:col.

Values come from five layers; a higher one wins (mappings merge key by key, anything else is
replaced):

1. overrides (command-line flags), as dotted keys: `{"server.port": 9000}`;
2. environment variables: BATON_APP, BATON_STORE, BATON_ENV, BATON_HOST, BATON_PORT,
   BATON_SOCKET, BATON_CONCURRENCY, and BATON_TOKEN (one admin token named "env");
3. the overlay under `environments:` that `environment` selects;
4. the file;
5. the defaults in the models below.

`${VAR}` and `${VAR:-default}` in the file's strings are read from the environment. Every
problem is a `baton.ConfigError` naming the file, line, column and key; all the problems found
in one load come together. See docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_serializer,
)

from baton.core import serialization
from baton.core.errors import ConfigError, SerializationError
from baton.core.retry import Retry
from baton.core.roles import Role
from baton.node.layers import Layers, Loc, Where, dotted, has, interpolate, read_yaml

if TYPE_CHECKING:
    from baton.engine.app import App

MASK = "***"
# environments that may be selected without an entry under `environments:` (an empty overlay)
KNOWN_ENVIRONMENTS = ("dev", "staging", "production")
# environment variables and the key each sets (BATON_TOKEN adds a token; see _from_environ)
ENV_KEYS: dict[str, Loc] = {
    "BATON_APP": ("app",),
    "BATON_STORE": ("store",),
    "BATON_ENV": ("environment",),
    "BATON_HOST": ("server", "host"),
    "BATON_PORT": ("server", "port"),
    "BATON_SOCKET": ("server", "socket"),
    "BATON_CONCURRENCY": ("workers", "concurrency"),
}
ENV_TOKEN = "BATON_TOKEN"
OVERRIDES = "<overrides>"
# sections that YAML leaves as None when every line under them is commented out
_SECTIONS = ("server", "workers", "webhooks", "steps", "workflows", "flags", "environments")


# -- value checks ------------------------------------------------------------------------------
def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?", re.IGNORECASE)
_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_BYTES |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _size(value: Any) -> Any:
    """Bytes: an int, or a string like "1MiB", "512KiB", "10MB", "1048576"."""
    if not isinstance(value, str):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not a size: give bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB"
        )
    size = float(match.group(1)) * _BYTES[(match.group(2) or "b").lower()]
    if size != int(size):
        raise ValueError(f"{value!r} is not a whole number of bytes")
    return int(size)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", re.IGNORECASE)
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration(value: Any) -> Any:
    """Seconds: a number, or a string like "30s", "500ms", "5m", "1h", "1d"."""
    if not isinstance(value, str):
        return value
    match = _DURATION.fullmatch(value.strip())
    if match is not None:
        return float(match.group(1)) * _SECONDS[match.group(2).lower()]
    try:
        return float(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a duration: give seconds, or a number with ms, s, m, h or d"
        ) from None


def _role(value: Any) -> Any:
    if isinstance(value, Role):
        return value
    if isinstance(value, str):
        return Role.parse(value)
    raise ValueError(f"a role is viewer, operator or admin, not {value!r}")


def _version(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # `version: 2` means the version registered as "2"
    return value


_APP = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _app(value: str | None) -> str | None:
    if value is not None and not _APP.fullmatch(value):
        raise ValueError(f"{value!r} is not module:attribute (for example examples.orders:app)")
    return value


def _some(values: list[str]) -> list[str]:
    if not values:
        raise ValueError("is empty: name at least one queue, or leave queues out for all")
    return values


def _json(value: Any) -> Any:
    try:
        serialization.dumps(value, "the value")
    except SerializationError as exc:
        raise ValueError(str(exc)) from None
    return value


Text = Annotated[str, AfterValidator(_non_empty)]
Seconds = Annotated[float, BeforeValidator(_duration), Field(ge=0)]
PositiveSeconds = Annotated[float, BeforeValidator(_duration), Field(gt=0)]


# -- the schema --------------------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Token(_Model):
    """A bearer token for the HTTP API and the role it grants."""

    name: Text
    token: Text = Field(repr=False)
    role: Annotated[Role, BeforeValidator(_role)]

    @field_serializer("role", when_used="json")
    def _role_name(self, role: Role) -> str:
        return str(role)


class ServerConfig(_Model):
    host: Text = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)  # 0: any free port
    socket: Text = ".baton/run/node.sock"  # the UNIX control socket
    max_body: Annotated[int, BeforeValidator(_size), Field(gt=0)] = 1024 * 1024  # bytes
    tokens: list[Token] = []


class WorkersConfig(_Model):
    concurrency: int = Field(64, ge=1)
    queues: Annotated[list[Text], AfterValidator(_some)] | None = None  # None: every queue


class InboundWebhook(_Model):
    """`POST /hooks/{name}`, verified with `secret`, starts `workflow` (at `version`)."""

    workflow: Text
    secret: Text = Field(repr=False)
    version: Annotated[str | None, BeforeValidator(_version)] = None


class WebhooksConfig(_Model):
    inbound: dict[Text, InboundWebhook] = {}


class RetryOverride(_Model):
    """Fields given here replace the step's own `baton.Retry` (or `Retry()` if it has none)."""

    max_attempts: int | None = Field(None, ge=1)
    initial: Seconds | None = None
    backoff: float | None = Field(None, ge=1)
    max_delay: Seconds | None = None
    jitter: bool | None = None


class StepOverride(_Model):
    retry: RetryOverride | None = None
    timeout: PositiveSeconds | None = None


class WorkflowOverride(_Model):
    timeout: PositiveSeconds | None = None


class NodeConfig(_Model):
    """A node's configuration, as `load_config` builds it (frozen)."""

    app: Annotated[str | None, AfterValidator(_app)] = None  # "module:attribute" of a baton.App
    store: Text | None = None  # None: the App's own store
    environment: Text = "dev"
    server: ServerConfig = ServerConfig()
    workers: WorkersConfig = WorkersConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    steps: dict[Text, StepOverride] = {}
    workflows: dict[Text, WorkflowOverride] = {}
    flags: dict[Text, Annotated[Any, AfterValidator(_json)]] = {}  # feature-flag defaults
    source: str | None = None  # the file it was loaded from

    # where each key and value was written (file:line:col, env variable, overrides)
    _keys: dict[Loc, Where] = PrivateAttr(default_factory=dict)
    _values: dict[Loc, Where] = PrivateAttr(default_factory=dict)

    def redacted(self) -> dict[str, Any]:
        """The configuration as plain data, every token, secret and store password shown as
        "***": safe for listings and logs."""
        data = self.model_dump(mode="json")
        for token in data["server"]["tokens"]:
            token["token"] = MASK
        for hook in data["webhooks"]["inbound"].values():
            hook["secret"] = MASK
        if data["store"]:
            data["store"] = _redact_url(data["store"])
        return data

    def where(self, *loc: str | int) -> Where:
        """Where the key at `loc` was written (`config.where("steps", "charge")`), else its
        nearest enclosing value: to report a problem found later at its file:line:col."""
        if loc in self._keys:
            return self._keys[loc]
        while loc:
            if loc in self._values:
                return self._values[loc]
            loc = loc[:-1]
        return Where(self.source or "<defaults>", 1 if self.source else 0, 1 if self.source else 0)


# -- loading -----------------------------------------------------------------------------------
def load_config(
    path: str | os.PathLike[str] | None,
    *,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> NodeConfig:
    """Read `path` (None: no file, only defaults, environment and overrides), apply the
    selected environment overlay, the BATON_* variables of `environ` (default: os.environ) and
    `overrides` (dotted keys; a None value is skipped), and validate the result.

    Raises ConfigError, listing every problem found, each with its file:line:col."""
    environ = os.environ if environ is None else environ
    source = os.fspath(path) if path is not None else None
    layers = read_yaml(source) if source is not None else Layers({}, Where("<defaults>"))
    data = layers.data
    errors: list[ConfigError] = []
    _empty_sections(data)
    if "source" in data:
        errors.append(layers.key_at(("source",)).error("source", _unknown("source", ())))
    overlays = _overlays(layers, errors)
    for key in list(data):
        if key != "environments":
            interpolate(layers, (key,), environ, errors)

    name, where = _selected(layers, overrides or {}, environ)
    if isinstance(name, str) and name in overlays:
        interpolate(layers, ("environments", name), environ, errors)
        layers.merge(overlays[name], ("environments", name))
    elif name not in KNOWN_ENVIRONMENTS and isinstance(name, str):
        errors.append(where.error("environment", _no_environment(name, overlays)))
    for other, overlay in overlays.items():
        if other != name:  # not applied, but a typo in it is still an error
            errors.extend(_unknown_keys(overlay, layers, ("environments", other)))
    data.pop("environments", None)

    _from_environ(layers, environ, errors)
    _from_overrides(layers, overrides or {}, errors)
    config = None
    try:
        config = NodeConfig.model_validate({**layers.data, "source": source})
    except ValidationError as exc:
        errors.extend(_validation_errors(exc, layers))
    if config is not None:
        errors.extend(_token_clashes(config, layers))
    if errors:
        raise ConfigError.combine(_ordered(errors, source))
    assert config is not None
    config._keys, config._values = layers.keys, layers.values
    return config


def _empty_sections(data: dict[str, Any]) -> None:
    for key in _SECTIONS:
        if key in data and data[key] is None:
            data[key] = {}
    webhooks = data.get("webhooks")
    if isinstance(webhooks, dict) and "inbound" in webhooks and webhooks["inbound"] is None:
        webhooks["inbound"] = {}


def _overlays(layers: Layers, errors: list[ConfigError]) -> dict[str, dict[str, Any]]:
    """The file's `environments:`, each checked to be a mapping of config keys."""
    overlays = layers.data.get("environments", {})
    if not isinstance(overlays, dict):
        errors.append(
            layers.value_at(("environments",)).error(
                "environments", "must be a mapping of environment names to partial configs"
            )
        )
        return {}
    good = {}
    for name, overlay in overlays.items():
        loc = ("environments", name)
        if overlay is None:
            overlay = overlays[name] = {}
        if not isinstance(overlay, dict):
            errors.append(layers.value_at(loc).error(loc, "must be a mapping (a partial config)"))
            continue
        _empty_sections(overlay)
        for key in ("environment", "environments", "source"):
            if key in overlay:
                errors.append(
                    layers.key_at((*loc, key)).error(
                        (*loc, key), f"{key!r} cannot be set inside an environment overlay"
                    )
                )
                del overlay[key]
        good[name] = overlay
    return good


def _selected(
    layers: Layers, overrides: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Any, Where]:
    """The environment to apply, and where that choice was made."""
    if overrides.get("environment") is not None:
        return overrides["environment"], Where(OVERRIDES)
    if environ.get("BATON_ENV"):
        return environ["BATON_ENV"], Where("<env BATON_ENV>")
    if "environment" in layers.data:
        return layers.data["environment"], layers.value_at(("environment",))
    return "dev", layers.root


def _no_environment(name: str, overlays: Mapping[str, Any]) -> str:
    known = ", ".join(KNOWN_ENVIRONMENTS)
    if overlays:
        return (
            f"unknown environment {name!r}: environments: defines {', '.join(sorted(overlays))} "
            f"(and {known} may be selected without an entry)"
        )
    return (
        f"unknown environment {name!r}: the file defines no environments: "
        f"(only {known} may be selected without an entry)"
    )


def _from_environ(layers: Layers, environ: Mapping[str, str], errors: list[ConfigError]) -> None:
    for var, loc in ENV_KEYS.items():
        value = environ.get(var)
        if value:  # an empty variable counts as unset
            try:
                layers.set(loc, value, Where(f"<env {var}>"))
            except ConfigError as exc:
                errors.append(exc)
    secret = environ.get(ENV_TOKEN)
    if not secret:
        return
    where = Where(f"<env {ENV_TOKEN}>")
    token = {"name": "env", "token": secret, "role": "admin"}
    tokens = layers.get(("server", "tokens"))
    if tokens is None:
        try:
            layers.set(("server", "tokens"), [token], where)
        except ConfigError as exc:
            errors.append(exc)
        return
    if not isinstance(tokens, list):
        return  # the file's error is reported by validation
    named = [i for i, t in enumerate(tokens) if isinstance(t, dict) and t.get("name") == "env"]
    index = named[0] if named else len(tokens)
    if named:
        tokens[index] = token
        layers.forget(("server", "tokens", index))
    else:
        tokens.append(token)
    layers.values[("server", "tokens", index)] = where
    for key in token:
        layers.values[("server", "tokens", index, key)] = where


def _from_overrides(
    layers: Layers, overrides: Mapping[str, Any], errors: list[ConfigError]
) -> None:
    where = Where(OVERRIDES)
    for key, value in overrides.items():
        if value is None:
            continue  # a flag that was not given
        parts = tuple(key.split(".")) if isinstance(key, str) else ()
        if not parts or not all(parts):
            errors.append(where.error("", f"{key!r} is not a dotted key such as server.port"))
            continue
        if parts[0] in ("environments", "source"):
            errors.append(where.error(key, f"{parts[0]!r} cannot be overridden"))
            continue
        try:
            layers.set(parts, _plain_override(value), where)
        except ConfigError as exc:
            errors.append(exc)


def _plain_override(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return [_plain_override(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_override(v) for k, v in value.items()}
    return value


# -- turning pydantic's errors into located ones ------------------------------------------------
def _validation_errors(
    exc: ValidationError, layers: Layers, prefix: Loc = (), kinds: tuple[str, ...] = ()
) -> list[ConfigError]:
    out = []
    for err in exc.errors():
        if kinds and err["type"] not in kinds:
            continue
        loc = _data_loc(tuple(err["loc"]), layers.get(prefix) if prefix else layers.data)
        written = layers.written((*prefix, *loc))
        if any(written[:n] in layers.broken for n in range(1, len(written) + 1)):
            continue  # its ${VAR} could not be read: reported already
        is_key = err["type"] == "extra_forbidden" or "[key]" in err["loc"]
        where = layers.key_at((*prefix, *loc)) if is_key else layers.value_at((*prefix, *loc))
        out.append(where.error(written, _problem(err, loc)))
    return out


def _data_loc(loc: tuple[Any, ...], data: Any) -> Loc:
    """pydantic's error location without its own tags ("[key]", "function-after[...]")."""
    out: list[str | int] = []
    node = data
    for part in loc:
        held = has(node, part)
        if not held and isinstance(part, str) and ("[" in part or "(" in part):
            continue
        out.append(part)
        node = node[part] if held else None
    return tuple(out)


def _problem(err: Any, loc: Loc) -> str:
    kind, message, given = err["type"], err["msg"], err.get("input")
    if kind == "extra_forbidden":
        return _unknown(str(loc[-1]), loc[:-1])
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "dict_type"):
        return f"must be a mapping, not {_describe(given)}"
    if kind == "list_type":
        return f"must be a list, not {_describe(given)}"
    if kind == "value_error":
        return message.removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    secret = bool(loc) and loc[-1] in ("token", "secret")
    if not secret:
        message += f" (got {_describe(given)})"
    return message


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


def _unknown(key: str, parent: Loc) -> str:
    known = _known_keys(parent)
    text = f"unknown key {key!r}"
    close = difflib.get_close_matches(key, known, n=1)
    if close:
        text += f" (did you mean {close[0]!r}?)"
    if known:
        text += f"; known keys: {', '.join(known)}"
    return text


def _known_keys(loc: Loc) -> list[str]:
    """The keys the model at `loc` accepts (following dicts and lists of models)."""
    kind: Any = NodeConfig
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(part, int) and typing.get_origin(kind) is list:
            kind = typing.get_args(kind)[0]
        elif typing.get_origin(kind) is dict:
            kind = typing.get_args(kind)[1]
        elif isinstance(kind, type) and issubclass(kind, BaseModel) and part in kind.model_fields:
            kind = kind.model_fields[str(part)].annotation
        else:
            return []
    kind = _unwrap(kind)
    if not (isinstance(kind, type) and issubclass(kind, BaseModel)):
        return []
    keys = [k for k in kind.model_fields if k != "source"]
    return [*keys, "environments"] if kind is NodeConfig else keys


def _unwrap(kind: Any) -> Any:
    while True:
        origin = typing.get_origin(kind)
        if origin is Annotated:
            kind = typing.get_args(kind)[0]
        elif origin in (typing.Union, types.UnionType):
            kind = next(a for a in typing.get_args(kind) if a is not type(None))
        else:
            return kind


def _unknown_keys(overlay: dict[str, Any], layers: Layers, prefix: Loc) -> list[ConfigError]:
    """Unknown keys in an overlay that is not applied (its values are not checked: they may
    refer to variables that only its environment sets)."""
    try:
        NodeConfig.model_validate(overlay)
    except ValidationError as exc:
        return _validation_errors(exc, layers, prefix, kinds=("extra_forbidden",))
    return []


def _token_clashes(config: NodeConfig, layers: Layers) -> list[ConfigError]:
    out, names, secrets = [], {}, {}
    for i, token in enumerate(config.server.tokens):
        loc = ("server", "tokens", i)
        if token.name in names:
            out.append(
                layers.value_at((*loc, "name")).error(
                    (*loc, "name"),
                    f"token name {token.name!r} is used twice (also {names[token.name]})",
                )
            )
        if token.token in secrets:
            out.append(
                layers.value_at((*loc, "token")).error(
                    (*loc, "token"), f"the same token as {secrets[token.token]}"
                )
            )
        names.setdefault(token.name, dotted(loc))
        secrets.setdefault(token.token, dotted(loc))
    return out


def _ordered(errors: list[ConfigError], source: str | None) -> list[ConfigError]:
    """File errors by position first, then the environment's and the overrides'."""
    unique: dict[tuple, ConfigError] = {}
    for e in errors:
        unique.setdefault((e.path, e.line, e.col, e.field, e.problem), e)
    return sorted(
        unique.values(), key=lambda e: (e.path != source, e.path == OVERRIDES, e.line, e.col)
    )


def _redact_url(url: str) -> str:
    """A store URL with its password (in the authority or a `password=` option) masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None and "password" not in parts.query:
        return url  # as written: urlunsplit would turn sqlite:///x into sqlite:/x
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:{MASK}@{host}"
    query = parts.query
    if "password" in query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


# -- the App -----------------------------------------------------------------------------------
def apply_overrides(app: App, config: NodeConfig) -> list[str]:
    """Apply `steps:` (retry, timeout) and `workflows:` (timeout) to `app`'s registered
    definitions; returns one line per change. A name the App does not register is a
    ConfigError at its key, and then nothing is changed."""
    registry = app.registry
    errors: list[ConfigError] = []
    steps = sorted(s.name for s in registry.all_steps())
    versions: dict[str, list[str]] = {}
    for name, version in registry.served():
        versions.setdefault(name, []).append(version)
    for name in config.steps:
        if registry.find_step(name) is None:
            errors.append(
                config.where("steps", name).error(
                    ("steps", name), f"the app registers no step {name!r}{_listing(steps)}"
                )
            )
    for name in config.workflows:
        if name not in versions:
            errors.append(
                config.where("workflows", name).error(
                    ("workflows", name),
                    f"the app registers no workflow {name!r}{_listing(versions)}",
                )
            )

    plans: list[tuple[Any, str, Any, str]] = []  # (definition, attribute, value, description)
    for name, override in config.steps.items():
        step = registry.find_step(name)
        if step is None:
            continue
        if override.retry is not None:
            given = override.retry.model_dump(exclude_none=True)
            try:
                retry = dataclasses.replace(step.retry or Retry(), **given)
            except ValueError as exc:
                loc = ("steps", name, "retry")
                errors.append(config.where("steps", name).error(loc, str(exc)))
            else:
                if retry != step.retry:
                    plans.append((step, "retry", retry, _retry_change(name, step.retry, given)))
        if override.timeout is not None and override.timeout != step.timeout:
            what = f"step {name}: timeout {_secs(step.timeout)} -> {_secs(override.timeout)}"
            plans.append((step, "timeout", override.timeout, what))
    for name, override in config.workflows.items():
        for version in versions.get(name, []):
            wf = registry.find(name, version)
            if wf is None or override.timeout is None or override.timeout == wf.timeout:
                continue
            label = f"workflow {name}" + (f" v{version}" if len(versions[name]) > 1 else "")
            what = f"{label}: timeout {_secs(wf.timeout)} -> {_secs(override.timeout)}"
            plans.append((wf, "timeout", override.timeout, what))
    if errors:
        raise ConfigError.combine(errors)
    for definition, attribute, value, _ in plans:
        setattr(definition, attribute, value)
    return [what for *_, what in plans]


def _retry_change(name: str, old: Retry | None, given: dict[str, Any]) -> str:
    if old is None:
        fields = ", ".join(f"{k}={v}" for k, v in given.items())
        return f"step {name}: retry none -> Retry({fields}), other fields default"
    changed = [f"{k} {getattr(old, k)} -> {v}" for k, v in given.items() if getattr(old, k) != v]
    return f"step {name}: retry {', '.join(changed)}"


def _secs(value: float | None) -> str:
    return "none" if value is None else f"{value:g}s"


def _listing(names: Any) -> str:
    names = sorted(names)
    return f" (registered: {', '.join(names)})" if names else " (it registers none)"
