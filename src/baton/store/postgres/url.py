"""`postgresql://` store URLs: what goes to libpq, what Baton reads itself, what may be shown."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

# query parameters Baton reads itself (everything else goes to libpq as is)
BATON_PARAMS = (
    "schema",
    "pool_size",
    "writers",
    "max_batch",
    "payload_threshold",
    "connect_timeout",
)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True)
class PgUrl:
    conninfo: str  # for psycopg: the URL without Baton's parameters
    shown: str  # for messages and listings: the password replaced by ***
    host: str
    options: dict[str, str]


def parse(url: str) -> PgUrl:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in BATON_PARAMS}
    theirs = [(k, v) for k, v in query if k not in BATON_PARAMS]
    scheme = "postgresql"
    conninfo = urlunsplit((scheme, parts.netloc, parts.path, urlencode(theirs), ""))
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    shown = urlunsplit((scheme, netloc, parts.path, parts.query, ""))
    host = f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    schema = ours.get("schema")
    if schema is not None and not _IDENTIFIER.match(schema):
        raise ValueError(f"schema must be a plain SQL identifier, got {schema!r} in {shown}")
    return PgUrl(conninfo, shown, host, ours)
