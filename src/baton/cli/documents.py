"""Stored JSON columns as values. The documents commands print are the API's
(`baton.server.views`), whether they come from a node or from the store."""

from __future__ import annotations

import json
from typing import Any


def decode(text: str | None) -> Any:
    """A stored JSON column as a value (None stays None)."""
    return None if text is None else json.loads(text)
