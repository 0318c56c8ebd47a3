"""Reading and validating request bodies and query strings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import falcon
from marshmallow import Schema, ValidationError

from taskframe.server.errors import APIError, validation_error

#: The key of errors about the body as a whole (marshmallow says ``_schema``).
BODY = "body"
SCHEMA_KEY = "_schema"


def read_json(
    req: falcon.Request,
    schema: Schema,
    limit: int,
    quick_load: Callable[[Any], dict[str, Any] | None] | None = None,
) -> dict[str, Any]:
    """The request body, parsed as JSON and loaded with ``schema``.

    415 for a non-JSON content type, 413 past ``limit`` bytes, 400 for
    malformed JSON, 422 naming every invalid field. ``quick_load`` may load
    a plainly valid body faster; when it returns None, ``schema`` decides.
    """
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise APIError(
            falcon.HTTP_415,
            "Unsupported media type",
            f"send a JSON body with Content-Type: application/json (got {media_type or 'none'})",
        )
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise APIError(
            falcon.HTTP_400, "Malformed JSON", f"the body is not valid JSON: {exc}"
        ) from None
    loaded = quick_load(document) if quick_load else None
    return loaded if loaded is not None else load(schema, document)


def load(schema: Schema, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise validation_error({BODY: ["expected a JSON object"]})
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise validation_error(_as_dict(exc.messages)) from None


def load_query(req: falcon.Request, schema: Schema) -> dict[str, Any]:
    """Query-string parameters loaded with ``schema`` (422 on bad values)."""
    return load(schema, dict(req.params))


def _as_dict(messages: Any) -> dict[str, Any]:
    """marshmallow's messages, with its internal ``_schema`` key (the whole body) named ``body``."""
    if not isinstance(messages, dict):
        return {BODY: messages}
    if SCHEMA_KEY in messages:
        messages = {BODY if k == SCHEMA_KEY else k: v for k, v in messages.items()}
    return messages


def _too_large(limit: int) -> APIError:
    return APIError(
        falcon.HTTP_413, "Request body too large", f"the body is larger than {limit} bytes"
    )
