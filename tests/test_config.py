"""baton.yaml: every key and its default, environment overlays, the precedence of the file,
overlays, environment variables and overrides, ${VAR} interpolation, every kind of error with
its exact file:line:col, redaction, and applying step and workflow overrides to an App."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

import baton
from baton.core.errors import BatonError, ConfigError
from baton.core.roles import Role
from baton.node.config import NodeConfig, Token, apply_overrides, load_config
from baton.node.layers import Where


def write(tmp_path: Path, text: str, name: str = "baton.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return str(path)


def load(tmp_path: Path, text: str, **options: Any) -> NodeConfig:
    options.setdefault("environ", {})
    return load_config(write(tmp_path, text), **options)


def fails(tmp_path: Path | None, text: str | None = None, **options: Any) -> list[str]:
    """The lines of the ConfigError that loading raises (file paths shown as F)."""
    options.setdefault("environ", {})
    path = write(tmp_path, text) if tmp_path is not None and text is not None else None
    with pytest.raises(ConfigError) as caught:
        load_config(path, **options)
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.errors)
    return [line.replace(path, "F") if path else line for line in lines]


FULL = """
app: examples.orders:app
store: sqlite:///.baton/orders.db
environment: dev
server:
  host: 0.0.0.0
  port: 9090
  socket: /run/baton/node.sock
  max_body: 512KiB
  tokens:
    - {name: ci, token: ci-secret, role: operator}
    - name: dash
      token: dash-secret
      role: viewer
workers:
  concurrency: 8
  queues: [default, payments]
webhooks:
  inbound:
    crm: {workflow: onboard, secret: whsec_abc}
    shop: {workflow: checkout, secret: whsec_def, version: 2}
steps:
  charge:
    retry: {max_attempts: 5, initial: 500ms, backoff: 3, max_delay: 1m, jitter: false}
    timeout: 30
  ship: {timeout: 2.5}
workflows:
  checkout: {timeout: 1h}
flags:
  new-pricing: false
  rollout: {percent: 10, regions: [eu, us]}
  launched: 2024-03-01
"""


# -- the schema ------------------------------------------------------------------------------------
def test_defaults_without_a_file() -> None:
    config = load_config(None, environ={})
    assert config.source is None
    assert config.app is None and config.store is None
    assert config.environment == "dev"
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.server.socket == ".baton/run/node.sock"
    assert config.server.max_body == 1024 * 1024
    assert config.server.tokens == []
    assert config.workers.concurrency == 64
    assert config.workers.queues is None
    assert config.webhooks.inbound == {}
    assert config.steps == {} and config.workflows == {} and config.flags == {}


def test_every_key_of_the_schema(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    assert config.source == str(tmp_path / "baton.yaml")
    assert config.app == "examples.orders:app"
    assert config.store == "sqlite:///.baton/orders.db"
    assert config.environment == "dev"
    server = config.server
    assert (server.host, server.port, server.socket) == ("0.0.0.0", 9090, "/run/baton/node.sock")
    assert server.max_body == 512 * 1024
    assert server.tokens == [
        Token(name="ci", token="ci-secret", role=Role.OPERATOR),
        Token(name="dash", token="dash-secret", role=Role.VIEWER),
    ]
    assert server.tokens[0].role is Role.OPERATOR and server.tokens[0].role > Role.VIEWER
    assert config.workers.concurrency == 8
    assert config.workers.queues == ["default", "payments"]
    crm, shop = config.webhooks.inbound["crm"], config.webhooks.inbound["shop"]
    assert (crm.workflow, crm.secret, crm.version) == ("onboard", "whsec_abc", None)
    assert (shop.workflow, shop.secret, shop.version) == ("checkout", "whsec_def", "2")
    charge = config.steps["charge"]
    assert charge.timeout == 30.0
    assert charge.retry is not None
    assert (charge.retry.max_attempts, charge.retry.initial, charge.retry.backoff) == (5, 0.5, 3)
    assert (charge.retry.max_delay, charge.retry.jitter) == (60.0, False)
    assert config.steps["ship"].retry is None and config.steps["ship"].timeout == 2.5
    assert config.workflows["checkout"].timeout == 3600.0
    assert config.flags == {
        "new-pricing": False,
        "rollout": {"percent": 10, "regions": ["eu", "us"]},
        "launched": "2024-03-01",  # a YAML date, as written
    }


def test_an_empty_file_and_empty_sections_mean_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "") == load_config(None, environ={}).model_copy(
        update={"source": str(tmp_path / "baton.yaml")}
    )
    config = load(tmp_path, "server:\nworkers:\nwebhooks:\n  inbound:\nsteps:\nflags:\n")
    assert config.server.port == 8080 and config.flags == {} and config.webhooks.inbound == {}


@pytest.mark.parametrize(
    ("given", "size"),
    [
        (2048, 2048),
        ("4096", 4096),
        ("100B", 100),
        ("512KiB", 512 * 1024),
        ("1MiB", 1024 * 1024),
        ("1.5KiB", 1536),
        ("2GiB", 2 * 1024**3),
        ("10MB", 10_000_000),
        ("3kb", 3000),
        (" 1 mib ", 1024 * 1024),
    ],
)
def test_max_body_in_bytes_or_with_a_unit(given: Any, size: int) -> None:
    config = load_config(None, overrides={"server.max_body": given}, environ={})
    assert config.server.max_body == size


@pytest.mark.parametrize(
    ("given", "seconds"),
    [
        (30, 30.0),
        (2.5, 2.5),
        ("45", 45.0),
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5h", 5400.0),
    ],
)
def test_timeouts_in_seconds_or_with_a_unit(given: Any, seconds: float) -> None:
    config = load_config(None, overrides={"workflows.checkout.timeout": given}, environ={})
    assert config.workflows["checkout"].timeout == seconds


def test_the_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    with pytest.raises(ValidationError):
        config.app = "other:app"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.server.port = 1  # type: ignore[misc]
    with pytest.raises(ValidationError):
        config.server.tokens[0].role = Role.ADMIN  # type: ignore[misc]


# -- environment overlays --------------------------------------------------------------------------
OVERLAYS = """
environment: production
store: sqlite:///base.db
server:
  port: 8000
  tokens:
    - {name: base, token: base-token, role: admin}
workers:
  concurrency: 4
  queues: [default]
steps:
  charge: {retry: {max_attempts: 2, initial: 1s}, timeout: 10}
flags:
  a: 1
  b: {x: 1, y: 2}
environments:
  production:
    store: null
    server:
      tokens:
        - {name: prod, token: prod-token, role: operator}
    workers: {concurrency: 128}
    steps: {charge: {retry: {max_attempts: 8}}}
    flags: {b: {y: 20}, c: 3}
  qa:
    workers: {concurrency: 2}
"""


def test_the_selected_overlay_is_deep_merged_over_the_file(tmp_path: Path) -> None:
    config = load(tmp_path, OVERLAYS)
    assert config.environment == "production"
    assert config.store is None  # null replaces
    assert config.server.port == 8000  # untouched keys stay
    assert [t.name for t in config.server.tokens] == ["prod"]  # a list is replaced whole
    assert config.workers.concurrency == 128
    assert config.workers.queues == ["default"]
    retry = config.steps["charge"].retry
    assert retry is not None and (retry.max_attempts, retry.initial) == (8, 1.0)
    assert config.steps["charge"].timeout == 10
    assert config.flags == {"a": 1, "b": {"x": 1, "y": 20}, "c": 3}


def test_other_overlays_are_not_applied(tmp_path: Path) -> None:
    config = load(tmp_path, OVERLAYS, overrides={"environment": "qa"})
    assert config.environment == "qa"
    assert config.workers.concurrency == 2
    assert config.store == "sqlite:///base.db"
    assert [t.name for t in config.server.tokens] == ["base"]
    assert config.flags == {"a": 1, "b": {"x": 1, "y": 2}}


@pytest.mark.parametrize("name", ["dev", "staging", "production"])
def test_the_usual_environments_need_no_entry(tmp_path: Path, name: str) -> None:
    config = load(tmp_path, "workers: {concurrency: 3}\n", environ={"BATON_ENV": name})
    assert config.environment == name
    assert config.workers.concurrency == 3


def test_which_environment_is_selected(tmp_path: Path) -> None:
    text = OVERLAYS.replace("environment: production", "environment: qa")
    assert load(tmp_path, text).environment == "qa"  # the file
    assert load(tmp_path, OVERLAYS.replace("environment: production\n", "")).environment == "dev"
    env = {"BATON_ENV": "production"}
    assert load(tmp_path, text, environ=env).workers.concurrency == 128  # env over file
    overrides = {"environment": "qa"}
    assert load(tmp_path, text, environ=env, overrides=overrides).workers.concurrency == 2
    assert load(tmp_path, text, environ={"BATON_ENV": ""}).environment == "qa"  # empty: unset


# -- precedence ------------------------------------------------------------------------------------
PORTS = """
server:
  port: 1001
environments:
  production:
    server: {port: 1002}
"""


def test_overrides_over_environment_variables_over_overlay_over_file(tmp_path: Path) -> None:
    assert load(tmp_path, "").server.port == 8080  # the default
    assert load(tmp_path, PORTS).server.port == 1001
    prod = {"BATON_ENV": "production"}
    assert load(tmp_path, PORTS, environ=prod).server.port == 1002
    assert load(tmp_path, PORTS, environ={**prod, "BATON_PORT": "1003"}).server.port == 1003
    config = load(
        tmp_path, PORTS, environ={**prod, "BATON_PORT": "1003"}, overrides={"server.port": 1004}
    )
    assert config.server.port == 1004


def test_every_environment_variable(tmp_path: Path) -> None:
    environ = {
        "BATON_APP": "pkg.mod:application",
        "BATON_STORE": "postgresql://db/baton",
        "BATON_ENV": "staging",
        "BATON_HOST": "0.0.0.0",
        "BATON_PORT": "0",
        "BATON_SOCKET": "/tmp/b.sock",
        "BATON_CONCURRENCY": "16",
        "BATON_TOKEN": "s3cret",
        "BATON_UNRELATED": "ignored",
    }
    config = load_config(None, environ=environ)
    assert config.app == "pkg.mod:application"
    assert config.store == "postgresql://db/baton"
    assert config.environment == "staging"
    assert (config.server.host, config.server.port, config.server.socket) == (
        "0.0.0.0",
        0,
        "/tmp/b.sock",
    )
    assert config.workers.concurrency == 16
    assert config.server.tokens == [Token(name="env", token="s3cret", role=Role.ADMIN)]


def test_baton_token_joins_the_files_tokens(tmp_path: Path) -> None:
    text = """
    server:
      tokens:
        - {name: ci, token: a, role: operator}
        - {name: env, token: old, role: viewer}
    """
    config = load(tmp_path, text, environ={"BATON_TOKEN": "new"})
    assert config.server.tokens == [
        Token(name="ci", token="a", role=Role.OPERATOR),
        Token(name="env", token="new", role=Role.ADMIN),  # replaces the file's "env"
    ]
    config = load(tmp_path, "server: {port: 1}\n", environ={"BATON_TOKEN": "t"})
    assert [t.name for t in config.server.tokens] == ["env"]


def test_empty_environment_variables_count_as_unset(tmp_path: Path) -> None:
    config = load(tmp_path, PORTS, environ={"BATON_PORT": "", "BATON_TOKEN": ""})
    assert config.server.port == 1001 and config.server.tokens == []


def test_overrides_are_dotted_keys(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        FULL,
        overrides={
            "server.port": 9000,
            "server.host": None,  # a flag that was not given: skipped
            "server.socket": tmp_path / "n.sock",  # a path
            "workers.queues": ("a", "b"),
            "flags.new-pricing": True,
            "steps.charge.timeout": "1m",
            "steps.refund.retry.max_attempts": 2,  # a section that was not there
            "webhooks.inbound.crm.version": 7,
            "app": "other.module:app",
        },
    )
    assert config.server.port == 9000
    assert config.server.host == "0.0.0.0"
    assert config.server.socket == str(tmp_path / "n.sock")
    assert config.workers.queues == ["a", "b"]
    assert config.flags["new-pricing"] is True
    assert config.flags["rollout"] == {"percent": 10, "regions": ["eu", "us"]}
    assert config.steps["charge"].timeout == 60.0
    assert config.steps["charge"].retry is not None  # the rest of the step stays
    refund = config.steps["refund"].retry
    assert refund is not None and refund.max_attempts == 2
    assert config.webhooks.inbound["crm"].version == "7"
    assert config.app == "other.module:app"
    tokens = [Token(name="x", token="y", role=Role.ADMIN)]
    assert load(tmp_path, FULL, overrides={"server.tokens": tokens}).server.tokens == tokens


# -- ${VAR} interpolation --------------------------------------------------------------------------
def test_interpolation_from_the_environment(tmp_path: Path) -> None:
    text = """
    store: "postgresql://${DB_USER}:${DB_PASS}@${DB_HOST:-localhost}/baton"
    server:
      port: ${PORT}
      host: ${HOST:-127.0.0.2}
      socket: "${EMPTY:-/run/x.sock}"
      tokens:
        - {name: ci, token: "${CI_TOKEN}", role: "${CI_ROLE:-operator}"}
    workers:
      queues: ["${Q1}", "q-${Q2:-two}"]
    flags:
      literal: "$${NOT_A_VAR} costs $$5"
      plain: "${GREETING} world"
    """
    environ = {
        "DB_USER": "u",
        "DB_PASS": "p",
        "PORT": "9001",
        "EMPTY": "",  # set but empty: the default applies
        "CI_TOKEN": "tok",
        "Q1": "one",
        "GREETING": "hello",
    }
    config = load(tmp_path, text, environ=environ)
    assert config.store == "postgresql://u:p@localhost/baton"
    assert config.server.port == 9001  # a string from the environment, converted
    assert config.server.host == "127.0.0.2"
    assert config.server.socket == "/run/x.sock"
    assert config.server.tokens == [Token(name="ci", token="tok", role=Role.OPERATOR)]
    assert config.workers.queues == ["one", "q-two"]
    assert config.flags == {"literal": "${NOT_A_VAR} costs $$5", "plain": "hello world"}


def test_interpolation_in_overlays_applies_to_the_selected_one_only(tmp_path: Path) -> None:
    text = """
    environment: dev
    environments:
      dev:
        store: "sqlite:///${HOME_DIR}/dev.db"
      production:
        store: "postgresql://app:${PROD_DB_PASSWORD}@db/baton"
    """
    config = load(tmp_path, text, environ={"HOME_DIR": "/home/me"})
    assert config.store == "sqlite:////home/me/dev.db"  # no PROD_DB_PASSWORD needed here
    assert fails(tmp_path, text, environ={"BATON_ENV": "production"}) == [
        "F:6:12: environments.production.store: environment variable PROD_DB_PASSWORD is not "
        "set (write ${PROD_DB_PASSWORD:-default} to give a default)"
    ]


def test_interpolation_errors_are_at_the_value(tmp_path: Path) -> None:
    text = """
    app: ${APP}
    server:
      host: "${BAD NAME}"
      tokens:
        - {name: ci, token: "${CI_TOKEN}", role: admin}
    flags:
      x: "${UNCLOSED"
    """
    assert fails(tmp_path, text) == [
        "F:1:6: app: environment variable APP is not set (write ${APP:-default} to give a default)",
        "F:3:9: server.host: ${BAD NAME} does not name an environment variable",
        "F:5:25: server.tokens[0].token: environment variable CI_TOKEN is not set (write "
        "${CI_TOKEN:-default} to give a default)",
        "F:7:6: flags.x: unclosed ${ (write $${ for a literal ${)",
    ]


# -- errors ----------------------------------------------------------------------------------------
def test_config_error_fields_and_format() -> None:
    error = ConfigError("must be >= 1", path="baton.yaml", line=3, col=5, field="workers.x")
    assert isinstance(error, BatonError) and isinstance(error, ValueError)
    assert baton.ConfigError is ConfigError
    assert (error.path, error.line, error.col, error.field, error.problem) == (
        "baton.yaml",
        3,
        5,
        "workers.x",
        "must be >= 1",
    )
    assert str(error) == "baton.yaml:3:5: workers.x: must be >= 1"
    assert error.errors == [error]
    other = ConfigError("no such file", path="x.yaml")
    assert str(other) == "x.yaml:0:0: no such file"
    both = ConfigError.combine([error, other])
    assert both.errors == [error, other]
    assert (both.path, both.line, both.field) == ("baton.yaml", 3, "workers.x")
    assert str(both) == "baton.yaml:3:5: workers.x: must be >= 1\nx.yaml:0:0: no such file"
    assert ConfigError.combine([other]) is other


def test_yaml_syntax_errors_have_a_position(tmp_path: Path) -> None:
    assert fails(tmp_path, "server:\n  port: [1\n") == [
        "F:3:1: invalid YAML: while parsing a flow sequence, expected ',' or ']', but got "
        "'<stream end>'"
    ]
    assert fails(tmp_path, "app: a: b\n") == [
        "F:1:7: invalid YAML: mapping values are not allowed here"
    ]
    assert fails(tmp_path, "server:\n\t- port\n") == [
        "F:2:1: invalid YAML: while scanning for the next token, found character '\\t' that "
        "cannot start any token"
    ]


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    text = "server:\n  port: 1\n  host: h\n  port: 2\n"
    assert fails(tmp_path, text) == [
        'F:4:3: invalid YAML: found duplicate key "port" (first defined at line 2)'
    ]


def test_the_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    assert fails(tmp_path, "- app\n") == [
        "F:1:1: the top level must be a mapping of keys, not a list"
    ]
    assert fails(tmp_path, "just text\n") == [
        "F:1:1: the top level must be a mapping of keys, not a string"
    ]


def test_unknown_keys_are_errors_at_the_key(tmp_path: Path) -> None:
    text = """
    app: a:b
    sever:
      port: 1
    server:
      prot: 2
      tokens:
        - {name: a, token: b, role: admin, scope: all}
    steps:
      charge: {retry: {attempts: 3}}
    environments:
      production:
        workers: {concurrancy: 3}
      qa:
        flag: {}
    """
    assert fails(tmp_path, text, environ={"BATON_ENV": "production"}) == [
        "F:2:1: sever: unknown key 'sever' (did you mean 'server'?); known keys: app, store, "
        "environment, server, workers, webhooks, steps, workflows, flags, environments",
        "F:5:3: server.prot: unknown key 'prot' (did you mean 'port'?); known keys: host, port, "
        "socket, max_body, tokens",
        "F:7:40: server.tokens[0].scope: unknown key 'scope'; known keys: name, token, role",
        "F:9:20: steps.charge.retry.attempts: unknown key 'attempts' (did you mean "
        "'max_attempts'?); known keys: max_attempts, initial, backoff, max_delay, jitter",
        "F:12:15: environments.production.workers.concurrancy: unknown key 'concurrancy' (did "
        "you mean 'concurrency'?); known keys: concurrency, queues",
        "F:14:5: environments.qa.flag: unknown key 'flag' (did you mean 'flags'?); known keys: "
        "app, store, environment, server, workers, webhooks, steps, workflows, flags, "
        "environments",
    ]


def test_bad_values_are_errors_at_the_value(tmp_path: Path) -> None:
    text = """
    app: not-an-app
    server:
      port: 70000
      host: ""
      max_body: lots
      tokens:
        - {name: a, token: b, role: root}
        - {name: c, role: admin}
        - just-a-string
    workers:
      concurrency: 0
      queues: []
    webhooks:
      inbound:
        crm: {secret: s}
    steps:
      charge: {timeout: soon, retry: {backoff: 0.5, jitter: maybe}}
    workflows:
      checkout: {timeout: -1}
    flags: [a, b]
    """
    assert fails(tmp_path, text) == [
        "F:1:6: app: 'not-an-app' is not module:attribute (for example examples.orders:app)",
        "F:3:9: server.port: input should be less than or equal to 65535 (got int 70000)",
        "F:4:9: server.host: must not be empty",
        "F:5:13: server.max_body: 'lots' is not a size: give bytes, or a number with B, KiB, "
        "MiB, GiB, KB, MB or GB",
        "F:7:33: server.tokens[0].role: unknown role 'root' (known: viewer, operator, admin)",
        "F:8:7: server.tokens[1].token: is required",
        "F:9:7: server.tokens[2]: must be a mapping, not the string 'just-a-string'",
        "F:11:16: workers.concurrency: input should be greater than or equal to 1 (got int 0)",
        "F:12:11: workers.queues: is empty: name at least one queue, or leave queues out for all",
        "F:15:10: webhooks.inbound.crm.workflow: is required",
        "F:17:21: steps.charge.timeout: 'soon' is not a duration: give seconds, or a number "
        "with ms, s, m, h or d",
        "F:17:44: steps.charge.retry.backoff: input should be greater than or equal to 1 (got "
        "float 0.5)",
        "F:17:57: steps.charge.retry.jitter: input should be a valid boolean, unable to "
        "interpret input (got the string 'maybe')",
        "F:19:23: workflows.checkout.timeout: input should be greater than 0 (got int -1)",
        "F:20:8: flags: must be a mapping, not a list",
    ]


def test_secrets_are_not_echoed_in_errors(tmp_path: Path) -> None:
    text = """
    server:
      tokens:
        - {name: a, token: [s3cret], role: admin}
    webhooks:
      inbound:
        crm: {workflow: w, secret: 12345}
    """
    lines = fails(tmp_path, text)
    assert lines == [
        "F:3:24: server.tokens[0].token: input should be a valid string",
        "F:6:32: webhooks.inbound.crm.secret: input should be a valid string",
    ]


def test_duplicate_token_names_and_values(tmp_path: Path) -> None:
    text = """
    server:
      tokens:
        - {name: ci, token: one, role: admin}
        - {name: ci, token: two, role: viewer}
        - {name: other, token: one, role: viewer}
    """
    assert fails(tmp_path, text) == [
        "F:4:14: server.tokens[1].name: token name 'ci' is used twice (also server.tokens[0])",
        "F:5:28: server.tokens[2].token: the same token as server.tokens[0]",
    ]


def test_an_unknown_environment(tmp_path: Path) -> None:
    text = "environment: prod\nenvironments:\n  production: {}\n"
    expected = (
        "environment: unknown environment 'prod': environments: defines production (and dev, "
        "staging, production may be selected without an entry)"
    )
    assert fails(tmp_path, text) == [f"F:1:14: {expected}"]
    assert fails(tmp_path, "server: {port: 1}\n", environ={"BATON_ENV": "qa"}) == [
        "<env BATON_ENV>:0:0: environment: unknown environment 'qa': the file defines no "
        "environments: (only dev, staging, production may be selected without an entry)"
    ]
    assert fails(None, overrides={"environment": "qa"})[0].startswith(
        "<overrides>:0:0: environment: unknown environment 'qa'"
    )


def test_bad_overlays(tmp_path: Path) -> None:
    text = """
    environments:
      production: [workers]
      qa:
        environment: dev
        workers: {concurrency: 2}
    """
    assert fails(tmp_path, text) == [
        "F:2:15: environments.production: must be a mapping (a partial config)",
        "F:4:5: environments.qa.environment: 'environment' cannot be set inside an environment "
        "overlay",
    ]
    assert fails(tmp_path, "environments: [a]\n") == [
        "F:1:15: environments: must be a mapping of environment names to partial configs"
    ]


def test_keys_must_be_strings_and_yaml_sets_are_refused(tmp_path: Path) -> None:
    assert fails(tmp_path, "flags:\n  1: on\n  b: !!set {x}\n") == [
        "F:2:3: flags: key 1 must be a string",
        "F:3:6: flags.b: a YAML set is not supported: use a mapping, list or scalar",
    ]


def test_source_is_not_a_key(tmp_path: Path) -> None:
    (line,) = fails(tmp_path, "source: x.yaml\n")
    assert line.startswith("F:1:1: source: unknown key 'source'")


def test_bad_environment_variables_name_the_variable() -> None:
    environ = {"BATON_PORT": "http", "BATON_CONCURRENCY": "0", "BATON_APP": "app"}
    assert fails(None, environ=environ) == [
        "<env BATON_APP>:0:0: app: 'app' is not module:attribute (for example examples.orders:app)",
        "<env BATON_PORT>:0:0: server.port: input should be a valid integer, unable to parse "
        "string as an integer (got the string 'http')",
        "<env BATON_CONCURRENCY>:0:0: workers.concurrency: input should be greater than or "
        "equal to 1 (got the string '0')",
    ]


def test_bad_overrides() -> None:
    overrides = {
        "server.port": "x",
        "server..host": 1,
        "environments.production.store": "s",
        "server.port.deep": 1,
        "srv.port": 1,
    }
    assert fails(None, overrides=overrides) == [
        "<overrides>:0:0: 'server..host' is not a dotted key such as server.port",
        "<overrides>:0:0: environments.production.store: 'environments' cannot be overridden",
        "<overrides>:0:0: server.port.deep: cannot be set: server.port is not a mapping",
        "<overrides>:0:0: server.port: input should be a valid integer, unable to parse string "
        "as an integer (got the string 'x')",
        "<overrides>:0:0: srv: unknown key 'srv' (did you mean 'server'?); known keys: app, "
        "store, environment, server, workers, webhooks, steps, workflows, flags, environments",
    ]


def test_flag_defaults_must_be_json() -> None:
    assert fails(None, overrides={"flags.when": {1, 2}, "flags.nan": float("nan")}) == [
        "<overrides>:0:0: flags.when: the value at $ is a set, which is not JSON-serializable",
        "<overrides>:0:0: flags.nan: the value at $ is a float (nan), which is not "
        "JSON-serializable",
    ]


def test_file_problems(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError) as caught:
        load_config(missing, environ={})
    assert str(caught.value) == f"{missing}:0:0: no such file"
    assert caught.value.path == missing
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path, environ={})
    (tmp_path / "bad.yaml").write_bytes(b"app: \xff\xfe\n")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(tmp_path / "bad.yaml", environ={})


def test_all_errors_come_together_in_file_order(tmp_path: Path) -> None:
    text = "workers: {concurrency: 0}\nserver: {port: x}\napp: ${NOPE}\n"
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={"BATON_HOST": ""}, overrides={"x": 1})
    error = caught.value
    assert [(e.line, e.col, e.field) for e in error.errors] == [
        (1, 24, "workers.concurrency"),
        (2, 16, "server.port"),
        (3, 6, "app"),
        (0, 0, "x"),
    ]
    assert (error.line, error.col, error.field) == (1, 24, "workers.concurrency")
    assert all(isinstance(e, ConfigError) and e.errors == [e] for e in error.errors)


# -- redaction -------------------------------------------------------------------------------------
def test_redacted_hides_tokens_secrets_and_store_passwords(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        FULL,
        overrides={"store": "postgresql://app:hunter2@db:5432/baton?sslmode=require"},
        environ={"BATON_TOKEN": "admin-secret"},
    )
    shown = config.redacted()
    text = json.dumps(shown)
    for secret in ("ci-secret", "dash-secret", "whsec_abc", "whsec_def", "hunter2", "admin-"):
        assert secret not in text
    assert shown["store"] == "postgresql://app:***@db:5432/baton?sslmode=require"
    assert shown["server"]["tokens"] == [
        {"name": "ci", "token": "***", "role": "operator"},
        {"name": "dash", "token": "***", "role": "viewer"},
        {"name": "env", "token": "***", "role": "admin"},
    ]
    assert shown["webhooks"]["inbound"]["shop"] == {
        "workflow": "checkout",
        "secret": "***",
        "version": "2",
    }
    assert shown["server"]["port"] == 9090 and shown["flags"]["new-pricing"] is False
    assert shown["source"] == config.source
    assert config.server.tokens[0].token == "ci-secret"  # the config itself is unchanged
    for secret in ("ci-secret", "whsec_abc"):
        assert secret not in repr(config)
    query = load_config(None, overrides={"store": "postgresql://db/x?password=pw&a=1"}, environ={})
    assert query.redacted()["store"] == "postgresql://db/x?password=***&a=1"
    assert load_config(None, environ={}).redacted()["store"] is None
    for plain in ("sqlite:///.baton/baton.db", "sqlite:////abs/b.db", "orders.db"):
        assert load_config(None, overrides={"store": plain}, environ={}).redacted()["store"] == (
            plain
        )


# -- applying overrides to an App ------------------------------------------------------------------
STEPS = """
steps:
  charge: {retry: {max_attempts: 5, initial: 250ms}, timeout: 30}
  ship: {retry: {max_attempts: 4}}
  notify: {timeout: 5}
workflows:
  checkout: {timeout: 1h}
"""


def make_app(tmp_path: Path) -> baton.App:
    app = baton.App(tmp_path / "app.db", worker=False)

    @app.step(
        name="charge", retry=baton.Retry(max_attempts=2, initial=2.0, non_retryable=(KeyError,))
    )
    def charge() -> None: ...

    @app.step(name="ship")
    def ship() -> None: ...

    @app.step(name="notify", timeout=5)
    def notify() -> None: ...

    @app.workflow(name="checkout", version="1")
    def checkout_v1() -> None: ...

    @app.workflow(name="checkout", version="2", timeout=60)
    def checkout_v2() -> None: ...

    return app


def test_apply_overrides_changes_steps_and_workflows(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    try:
        changes = apply_overrides(app, load(tmp_path, STEPS))
        assert changes == [
            "step charge: retry max_attempts 2 -> 5, initial 2.0 -> 0.25",
            "step charge: timeout none -> 30s",
            "step ship: retry none -> Retry(max_attempts=4), other fields default",
            "workflow checkout v1: timeout none -> 3600s",
            "workflow checkout v2: timeout 60s -> 3600s",
        ]
        registry = app.registry
        charge = registry.find_step("charge")
        assert charge is not None and charge.timeout == 30
        assert charge.retry == baton.Retry(
            max_attempts=5, initial=0.25, non_retryable=(KeyError,)
        )  # the fields not given are kept
        ship = registry.find_step("ship")
        assert ship is not None and ship.retry == baton.Retry(max_attempts=4)
        notify = registry.find_step("notify")
        assert notify is not None and notify.timeout == 5  # unchanged: not described
        for version in ("1", "2"):
            wf = registry.find("checkout", version)
            assert wf is not None and wf.timeout == 3600
        assert apply_overrides(app, load(tmp_path, STEPS)) == []  # applied already
    finally:
        app.shutdown()


def test_apply_overrides_refuses_unknown_names_and_changes_nothing(tmp_path: Path) -> None:
    text = """
    steps:
      charge: {timeout: 1}
      refund: {timeout: 2}
    workflows:
      checkot: {timeout: 3}
    """
    app = make_app(tmp_path)
    try:
        config = load(tmp_path, text, overrides={"steps.nope.timeout": 4})
        with pytest.raises(ConfigError) as caught:
            apply_overrides(app, config)
        assert str(caught.value).replace(str(tmp_path / "baton.yaml"), "F").splitlines() == [
            "F:3:3: steps.refund: the app registers no step 'refund' (registered: charge, "
            "notify, ship)",
            "<overrides>:0:0: steps.nope: the app registers no step 'nope' (registered: charge, "
            "notify, ship)",
            "F:5:3: workflows.checkot: the app registers no workflow 'checkot' (registered: "
            "checkout)",
        ]
        charge = app.registry.find_step("charge")
        assert charge is not None and charge.timeout is None  # nothing applied
    finally:
        app.shutdown()


def test_config_where_locates_keys_for_later_checks(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    path = str(tmp_path / "baton.yaml")
    assert config.where("webhooks", "inbound", "crm") == Where(path, 19, 5)
    assert config.where("webhooks", "inbound", "crm", "workflow") == Where(path, 19, 11)
    assert config.where("nothing", "here") == Where(path, 1, 1)
    assert load_config(None, environ={}).where("steps") == Where("<defaults>", 0, 0)


def test_an_applied_retry_override_takes_effect(tmp_path: Path) -> None:
    app = baton.App(tmp_path / "run.db", poll_interval=0.05)
    attempts: list[int] = []
    try:

        @app.step(name="flaky", retry=baton.Retry(max_attempts=1))
        def flaky() -> None:
            attempts.append(1)
            raise RuntimeError("down")

        @app.workflow()
        def job() -> None:
            flaky()

        config = load_config(
            None,
            overrides={"steps": {"flaky": {"retry": {"max_attempts": 3, "initial": "10ms"}}}},
            environ={},
        )
        apply_overrides(app, config)
        with pytest.raises(baton.RunFailed) as caught:
            app.run("job")
        assert caught.value.attempts == 3 and len(attempts) == 3
    finally:
        app.shutdown()


def test_flag_defaults_from_the_config_reach_the_app(tmp_path: Path) -> None:
    config = load(tmp_path, FULL)
    app = baton.App(tmp_path / "flags.db", worker=False)
    try:
        app.flags.defaults(config.flags)
        assert app.flags.get("new-pricing") is False
        assert app.flags.get("rollout") == {"percent": 10, "regions": ["eu", "us"]}
    finally:
        app.shutdown()
