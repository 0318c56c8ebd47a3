"""The OpenAPI document, built once per set of job types for the unit tests.

``create_app`` builds the whole document (apispec over every schema) each
time: 50 ms, and the unit tests create hundreds of apps over the same
plugins. The document is a function of the executors and the route table
only, and the server only serves it; so the tests reuse it while both are
the very same objects with the same entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from taskframe.server.http import routes

Built = tuple[Mapping[str, Any], dict[str, Any], Iterable[Any], dict[str, Any]]


def reusing(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``build`` whose answer is reused for the same executors (held, so never recycled)."""
    built: list[Built] = []

    def build_once(executors: Mapping[str, Any], route_table: Iterable[Any]) -> dict[str, Any]:
        for known, entries, table, document in built:
            if known is executors and table is route_table and dict(executors) == entries:
                return document
        document = build(executors, route_table)
        built.append((executors, dict(executors), route_table, document))
        del built[:-8]  # the few plugin sets in use; the rest are built again
        return document

    return build_once


def install() -> Callable[[], None]:
    """Reuse documents in ``create_app`` (through the route table); returns the undo."""
    original = routes.build_openapi
    routes.build_openapi = reusing(original)  # type: ignore[assignment]

    def undo() -> None:
        routes.build_openapi = original  # type: ignore[assignment]

    return undo
