"""Property-based fuzzing of the REST API from its own OpenAPI document (schemathesis),
over real HTTP on loopback: no request, however odd, gets a 5xx, and the answers conform to
the document (status codes, content types, bodies).

The operations are collected from the document `create_api` builds (one test per operation,
so they spread over the xdist workers); each test first checks that the node serves that
same document at /api/v1/openapi.json. (schemathesis' lazy `from_fixture` loader does not
work with pytest 9, hence the document at collection time.)
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

import baton
from apikit import TOKENS, Served, agents_node, served
from baton.core.roles import Role
from baton.server.api import create_api

pytestmark = [
    pytest.mark.timeout(300),
    # schemathesis' strategies draw from `random`, which Hypothesis deprecates: not ours to fix
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]
# BATON_FUZZ_EXAMPLES=500 for a deeper, randomized hunt by hand (and BATON_FUZZ_BACKEND=postgres
# to hunt on PostgreSQL); the suite runs 15 per operation, derandomized, on SQLite
EXAMPLES = int(os.environ.get("BATON_FUZZ_EXAMPLES", "15"))

ADMIN = {"Authorization": f"Bearer {TOKENS[Role.ADMIN].token}"}
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _document() -> dict[str, Any]:
    """The OpenAPI document of the API, as `create_api` builds it."""
    with tempfile.TemporaryDirectory(prefix="baton-openapi-") as folder:
        app = baton.App(Path(folder) / "baton.db", worker=False)
        try:
            return create_api(app, tokens=list(TOKENS.values())).openapi()
        finally:
            app.shutdown(timeout=5)


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@pytest.fixture(scope="module")
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """SQLite; BATON_FUZZ_BACKEND=postgres for a hunt on PostgreSQL by hand."""
    if os.environ.get("BATON_FUZZ_BACKEND") != "postgres":
        yield tmp_path_factory.mktemp("fuzz") / "baton.db"
        return
    import pgserver as pg

    url = pg.fresh_schema_url(request.getfixturevalue("pg_dsn"))
    yield url
    pg.drop_schema(url)


@pytest.fixture(scope="module")
def node(store: Any) -> Iterator[Served]:
    with agents_node() as agents, served(store, node=agents) as s:
        # some history, so that the listing routes have rows to render
        s.app.start("greet", "fuzz").result(timeout=20)
        s.app.start("expense", 1)
        served_document = s.admin.get("/api/v1/openapi.json").json()
        assert served_document == DOCUMENT, "the node serves another document than the one fuzzed"
        yield s


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="BATON_FUZZ_EXAMPLES" not in os.environ,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_breaks_the_api(case: schemathesis.Case, node: Served) -> None:
    case.call_and_validate(base_url=node.url, headers=ADMIN, checks=CHECKS, timeout=30)
