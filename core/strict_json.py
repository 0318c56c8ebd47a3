"""The JSON the API accepts, and text that can always be written out again.

Python's ``json`` module accepts more than JSON: ``NaN`` and ``Infinity``,
numbers too large for a float (they become ``inf``), nesting as deep as the
stack allows, and escapes of lone UTF-16 surrogates (``"\\ud800"``) that make
a ``str`` no UTF-8 encoder can write. A job carrying any of these would be
stored and then fail every answer that contains it, so request bodies are
parsed with :func:`parse`, input text is refused with :func:`has_surrogate`,
and text produced by executors is repaired with :func:`encodable`.

Nothing here recurses: a hostile document cannot exhaust the stack.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from taskframe.core import json_codec

#: The deepest nesting of objects and arrays a request body may have.
MAX_DEPTH = 64
#: The deepest result a worker may report: it travels three levels down in
#: ``POST /lease`` (``{"completions": [{"result": ...}]}``).
MAX_RESULT_DEPTH = MAX_DEPTH - 3

_SURROGATE = re.compile("[\ud800-\udfff]")
# A lone surrogate reaches json.loads as an escape or as (invalid) UTF-8 bytes
# (or in a UTF-16 or UTF-32 body).
_SURROGATE_IN_BODY = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")
_CONTAINERS = (dict, list)


class JSONRefused(ValueError):
    """A body that is not the JSON the API accepts: ``title`` and ``description`` say why."""

    def __init__(self, title: str, description: str) -> None:
        super().__init__(description)
        self.title = title
        self.description = description


def parse(raw: bytes | str) -> Any:
    """``raw`` as JSON, refusing NaN, infinities and nesting deeper than :data:`MAX_DEPTH`."""
    return parse_checked(raw)[0]


def parse_checked(raw: bytes | str) -> tuple[Any, bool]:
    """(:func:`parse` of ``raw``, whether its text is known free of lone surrogates).

    orjson reads the ordinary body (and refuses lone surrogates); what it
    refuses or might read differently goes to the standard library's decoder,
    which names the problem or reads what orjson cannot.
    """
    try:
        document = json_codec.fast_loads(raw)
    except ValueError:
        return _parse_slowly(raw), False
    if _may_nest_deeper(raw) and depth_exceeds(document, MAX_DEPTH):
        raise _too_deep()
    return document, True


def _parse_slowly(raw: bytes | str) -> Any:
    try:
        if not isinstance(raw, str):  # as json.loads decodes bytes
            raw = raw.decode(json.detect_encoding(raw), "surrogatepass")
        document = _DECODER.decode(raw)
    except RecursionError:
        raise _too_deep() from None
    except JSONRefused:
        raise
    except ValueError as exc:
        raise JSONRefused("Malformed JSON", f"the body is not valid JSON: {exc}") from None
    if _may_nest_deeper(raw) and depth_exceeds(document, MAX_DEPTH):
        raise _too_deep()
    return document


def may_hold_surrogates(raw: bytes) -> bool:
    """False when the body cannot decode to a lone surrogate (cheap; true may be a false alarm)."""
    if json.detect_encoding(raw) not in ("utf-8", "utf-8-sig"):
        return True  # UTF-16 and UTF-32 bodies: json.loads decodes them with "surrogatepass"
    if b"\\u" not in raw and b"\xed" not in raw:
        return False
    return _SURROGATE_IN_BODY.search(raw) is not None


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when ``value`` nests objects and arrays more than ``limit`` deep."""
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below = []
        for container in level:
            for item in container.values() if type(container) is dict else container:
                if type(item) in _CONTAINERS:
                    below.append(item)
        level = below
    return False


def has_surrogate(text: str) -> bool:
    """True when ``text`` holds a lone surrogate, which UTF-8 cannot encode."""
    return not text.isascii() and _SURROGATE.search(text) is not None


def surrogate_path(value: Any) -> str | None:
    """Where in a JSON value text holds a lone surrogate (``"a.0.b"``), or None.

    A key holding one is named by its parent's path followed by ``<key>``.
    """
    if _clean_text(value):  # the common case, without building paths
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        kind = type(item)
        if kind is str:
            if has_surrogate(item):
                return path
        elif kind is dict:
            for key, child in item.items():
                if type(key) is str and has_surrogate(key):
                    return _join(path, "<key>")
                if type(child) in (str, dict, list):
                    stack.append((child, _join(path, key)))
        elif kind is list:
            stack.extend((child, _join(path, i)) for i, child in enumerate(item))
    return None


def _clean_text(value: Any) -> bool:
    """True when no string or key in ``value`` holds a lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            for key, child in item.items():
                if type(key) is not str or (not key.isascii() and _SURROGATE.search(key)):
                    return False
                kind = type(child)
                if kind is str:
                    if not child.isascii() and _SURROGATE.search(child):
                        return False
                elif kind is dict or kind is list:
                    stack.append(child)
        elif kind is list:
            for child in item:
                kind = type(child)
                if kind is str:
                    if not child.isascii() and _SURROGATE.search(child):
                        return False
                elif kind is dict or kind is list:
                    stack.append(child)
        elif kind is str and not item.isascii() and _SURROGATE.search(item):
            return False
    return True


def encodable_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


def encodable(value: Any, max_depth: int | None = None) -> Any:
    """A JSON value that UTF-8 can encode and ``json.dumps(allow_nan=False)`` can write.

    Lone surrogates become U+FFFD, NaN and infinities become null, containers
    past ``max_depth`` become null and other objects their ``str``. A value
    that needs none of this comes back as it is.
    """
    if max_depth is None and not _needs_repair(value):
        return value
    root: list[Any] = [None]
    stack: list[tuple[Any, Any, Any, int]] = [(value, root, 0, 0)]
    while stack:
        item, parent, slot, depth = stack.pop()
        kind = type(item)
        if kind in (dict, list, tuple) and max_depth is not None and depth >= max_depth:
            parent[slot] = None
        elif kind is dict:
            copy: dict[str, Any] = {}
            parent[slot] = copy
            for key, child in item.items():
                name = encodable_text(key if type(key) is str else str(key))
                copy[name] = None  # keeps the order; filled in below
                stack.append((child, copy, name, depth + 1))
        elif kind in (list, tuple):
            array: list[Any] = [None] * len(item)
            parent[slot] = array
            stack.extend((child, array, i, depth + 1) for i, child in enumerate(item))
        elif kind is str:
            parent[slot] = encodable_text(item)
        elif kind is float:
            parent[slot] = item if math.isfinite(item) else None
        elif item is None or kind in (bool, int):
            parent[slot] = item
        else:
            parent[slot] = encodable_text(str(item))
    return root[0]


def _needs_repair(value: Any) -> bool:
    """True when ``value`` holds a lone surrogate, a non-finite float or a non-JSON type."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if has_surrogate(item):
                return True
        elif kind is dict:
            if not all(type(key) is str and not has_surrogate(key) for key in item):
                return True
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is float:
            if not math.isfinite(item):
                return True
        elif not (item is None or kind is bool or kind is int):
            return True
    return False


def _join(path: str, part: object) -> str:
    return f"{path}.{part}" if path else str(part)


def _refuse_constant(name: str) -> Any:
    raise JSONRefused(
        "Malformed JSON", f"{name} is not a JSON number: NaN, Infinity and -Infinity are refused"
    )


def _finite_float(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise JSONRefused(
            "Malformed JSON", f"the number {text[:40]} is too large for a 64-bit float"
        )
    return number


def _may_nest_deeper(text: bytes | str) -> bool:
    # Fewer brackets than the limit cannot nest past it: most bodies skip the walk.
    if isinstance(text, bytes):
        return text.count(b"[") + text.count(b"{") > MAX_DEPTH
    return text.count("[") + text.count("{") > MAX_DEPTH


def _too_deep() -> JSONRefused:
    return JSONRefused(
        "Nesting too deep",
        f"the body nests objects and arrays more than {MAX_DEPTH} levels deep",
    )


# Built once: json.loads with hooks would build a decoder per call. Like
# json's own default decoder, it is shared by every thread.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
