"""JSON schemas for structured output: from a pydantic model or a dict, and validation."""

from __future__ import annotations

import json
from typing import Any

import pydantic

from lab.core import jsontext

Schema = dict[str, Any] | type[pydantic.BaseModel]


class InvalidJSON(ValueError):
    """The answer is not JSON, or not JSON of the requested schema."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def json_schema(schema: Schema) -> dict[str, Any]:
    """The JSON schema to send: every object closed, as both providers' native modes require."""
    raw = schema.model_json_schema() if isinstance(schema, type) else schema
    return _closed(raw)


def _closed(node: Any) -> Any:
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: _closed(value) for key, value in node.items()}
    if closed.get("type") == "object":
        closed.setdefault("additionalProperties", False)
    return closed


def parse(text: str, schema: Schema) -> Any:
    """Decode and validate an answer; a pydantic schema gives a model instance."""
    try:
        data = jsontext.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJSON("invalid_json", f"answer is not valid JSON: {exc}") from exc
    import jsonschema  # its format checkers take about a second to import: only when a dict schema is validated

    try:
        if isinstance(schema, type):
            return schema.model_validate(data)
        jsonschema.validate(data, schema)
    except (pydantic.ValidationError, jsonschema.ValidationError) as exc:
        raise InvalidJSON("schema_mismatch", f"answer does not match the schema: {exc}"[:500]) from exc
    return data
