"""Renamed :mod:`taskframe.core.strict_json` (what it holds: the strict JSON the API accepts).

Kept only while branches written against the old name are merged; delete it after.
"""

from taskframe.core.strict_json import (
    MAX_DEPTH,
    MAX_RESULT_DEPTH,
    JSONRefused,
    depth_exceeds,
    encodable,
    encodable_text,
    has_surrogate,
    may_hold_surrogates,
    parse,
    parse_checked,
    surrogate_path,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_RESULT_DEPTH",
    "JSONRefused",
    "depth_exceeds",
    "encodable",
    "encodable_text",
    "has_surrogate",
    "may_hold_surrogates",
    "parse",
    "parse_checked",
    "surrogate_path",
]
