"""Configs as shown to operators: secrets replaced before they leave the process."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

MASK = "***"
# key names that usually hold secrets: api_key, db_password, auth_token, credentials, ...
SECRET_KEY = re.compile(r"password|passwd|secret|token|key|credential", re.IGNORECASE)


def redact(value: Any) -> Any:
    """A JSON-friendly copy of a config with SecretStr/SecretBytes values and the values of
    secret-sounding keys masked, at any depth."""
    if isinstance(value, SecretStr | SecretBytes):
        return MASK
    if isinstance(value, BaseModel):
        fields = {name: getattr(value, name) for name in type(value).model_fields}
        fields.update(value.model_extra or {})
        return redact(fields)
    if isinstance(value, dict):
        return {
            str(k): (MASK if SECRET_KEY.search(str(k)) and v is not None else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
