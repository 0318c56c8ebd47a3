"""Reading and validating request bodies and query strings."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import falcon
import orjson
from marshmallow import Schema, ValidationError

from taskframe.core import strict_json
from taskframe.core.errors import ErrorCode
from taskframe.core.schemas import UNENCODABLE
from taskframe.server.http.errors import APIError, validation_error
from taskframe.server.storage.representation import StoredJSON

log = logging.getLogger("taskframe.server")

#: Answers nest at most this deep; only rows stored by older versions come near it.
ANSWER_MAX_DEPTH = 200

#: The key of errors about the body as a whole (marshmallow says ``_schema``).
BODY = "body"
SCHEMA_KEY = "_schema"


def read_json(
    req: falcon.Request,
    schema: Schema,
    limit: int,
    quick_load: Callable[..., dict[str, Any] | None] | None = None,
    more_errors: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The request body, parsed as JSON and loaded with ``schema``.

    415 for a non-JSON content type, 413 past ``limit`` bytes, 400 for
    malformed JSON (NaN and Infinity included) or nesting deeper than
    ``strict_json.MAX_DEPTH``, 422 naming every invalid field, text that
    UTF-8 cannot encode included. ``quick_load`` may load a plainly valid
    body faster; when it returns None, ``schema`` decides. When the schema
    refuses a body, ``more_errors(body)`` may add the problems of the next
    layer (a job's payload), so that one answer names them all.
    """
    media_type = (req.content_type or "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise APIError(
            falcon.HTTP_415,
            "Unsupported media type",
            f"send a JSON body with Content-Type: application/json (got {media_type or 'none'})",
            code=ErrorCode.UNSUPPORTED_MEDIA_TYPE,
        )
    if req.content_length is not None and req.content_length > limit:
        raise _too_large(limit)
    raw = req.bounded_stream.read(limit + 1)
    if len(raw) > limit:
        raise _too_large(limit)
    try:
        document, clean = strict_json.parse_checked(raw)
    except strict_json.JSONRefused as exc:
        raise APIError(
            falcon.HTTP_400, exc.title, exc.description, code=ErrorCode.BAD_JSON
        ) from None
    suspect = not clean and strict_json.may_hold_surrogates(raw)
    loaded = quick_load(document, text_checked=not suspect) if quick_load else None
    if loaded is None:
        loaded = load(schema, document, more_errors)
    if suspect:
        # The schemas refuse such text field by field (and repair executor
        # output); this catches any field they miss, before anything is written.
        refuse_surrogates(loaded)
    return loaded


def refuse_surrogates(loaded: dict[str, Any]) -> None:
    """422 naming the first field whose text UTF-8 cannot encode."""
    path = strict_json.surrogate_path(loaded)
    if path is not None:
        raise validation_error({path or BODY: [UNENCODABLE]})


def load(
    schema: Schema,
    data: Any,
    more_errors: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise validation_error({BODY: ["expected a JSON object"]})
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as exc:
        errors = _as_dict(exc.messages)
        if more_errors is not None:
            errors = {**more_errors(data), **errors}  # the schema's word on a field wins
        raise validation_error(errors) from None
    return loaded


def load_query(req: falcon.Request, schema: Schema, only: str | None = None) -> dict[str, Any]:
    """Query-string parameters loaded with ``schema`` (422 on bad values); with
    ``only``, that parameter alone (the others are ignored)."""
    params = dict(req.params)
    if only is not None:
        params = {only: params[only]} if only in params else {}
    refuse_surrogates(params)
    return load(schema, params)


def _as_dict(messages: Any) -> dict[str, Any]:
    """marshmallow's messages, with its internal ``_schema`` key (the whole body) named ``body``."""
    if not isinstance(messages, dict):
        return {BODY: messages}
    if SCHEMA_KEY in messages:
        messages = {BODY if k == SCHEMA_KEY else k: v for k, v in messages.items()}
    named: dict[str, Any] = messages
    return named


def _too_large(limit: int) -> APIError:
    return APIError(
        falcon.HTTP_413,
        "Request body too large",
        f"the body is larger than {limit} bytes",
        code=ErrorCode.PAYLOAD_TOO_LARGE,
    )


def answer_handler() -> falcon.media.JSONHandler:
    """Falcon's JSON handler: answers written with :func:`dump_answer`, bodies read
    by the API's rules (the resources read theirs with :func:`read_json`)."""
    return falcon.media.JSONHandler(dumps=dump_answer, loads=strict_json.parse)


def dump_answer(media: Any) -> bytes:
    """``media`` as strict JSON in UTF-8, whatever it holds.

    Stored JSON text (:class:`StoredJSON`) is spliced in as it is. An answer
    is written after its request changed state (a job submitted, leased,
    completed), so it must not fail: what orjson refuses (integers past 64
    bits, keys that are not strings, lone surrogates, very deep nesting) is
    written by the standard library, and text UTF-8 cannot encode is
    repaired rather than answered 500.
    """
    try:
        return orjson.dumps(media, default=_splice)
    except TypeError:  # orjson.JSONEncodeError is one
        pass
    media = _expand(media)
    try:
        return json.dumps(media, ensure_ascii=False, allow_nan=False).encode()
    except (ValueError, TypeError, RecursionError) as exc:
        log.warning("repairing an answer JSON cannot hold as it is: %s", exc)
        repaired = strict_json.encodable(media, max_depth=ANSWER_MAX_DEPTH)
        return json.dumps(repaired, ensure_ascii=False, allow_nan=False).encode()


def _splice(value: Any) -> orjson.Fragment:
    if type(value) is StoredJSON:
        return orjson.Fragment(value.text)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _expand(value: Any) -> Any:
    """``value`` with every :class:`StoredJSON` in it decoded (copies, no recursion)."""
    root = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        parent, slot = stack.pop()
        item = parent[slot]
        kind = type(item)
        if kind is StoredJSON:
            parent[slot] = item.value()
        elif kind is dict:
            parent[slot] = copy = dict(item)
            stack.extend((copy, key) for key in copy)
        elif kind is list or kind is tuple:
            parent[slot] = array = list(item)
            stack.extend((array, index) for index in range(len(array)))
    return root[0]
