"""Pages of jobs in any of the orders ``GET /jobs`` offers, with keyset cursors.

A page goes on after the previous page's last (sort key, id): a cursor that
stays right while jobs are added or change (no offset), served by one index
per order (see ``list_jobs`` in the SQL files). Creation order is id order:
ids are given as jobs are inserted, right after their ``created_at`` (an index
of its own would cost every submission for nothing). Newest first (``sort=id``,
``order=desc``) keeps its plain integer cursor, the id, as before; the other
orders' cursors are text: the id, or the key and the id (opaque).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from taskframe.core.limits import MAX_ID
from taskframe.server.storage import JobRow, Transaction

SORTS = ("id", "priority", "created", "finished")
ORDERS = ("desc", "asc")
#: The column each sort walks (with the id after it); None: the id alone.
SORT_COLUMN: dict[str, Literal["priority", "finished_at"] | None] = {
    "id": None,
    "created": None,
    "priority": "priority",
    "finished": "finished_at",
}
#: Keys before and after every stored value: the start of a first page.
_LOWEST, _HIGHEST = -1e300, 1e300
_FIRST_ID = {"desc": 2**62, "asc": 0}
#: The filters of a listing, in the order their SQL fragments are put in.
FILTERS = (
    "status",
    "type",
    "queue",
    "key",
    "created_after",
    "created_before",
    "finished_after",
    "finished_before",
    "dependant_of",
)


class BadCursor(ValueError):
    """A cursor this server did not write (or for another order)."""


@dataclass(frozen=True)
class Listing:
    """What a page shows: the filters set (by name), the order and the page size."""

    filters: dict[str, Any] = field(default_factory=dict)
    sort: str = "id"
    order: str = "desc"
    limit: int = 100

    @property
    def plain(self) -> bool:
        """Newest first: the order whose cursor is the id alone."""
        return self.sort == "id" and self.order == "desc"

    def query(self, tx: Transaction) -> str:
        """The name of the composed ``list_jobs`` query (filters, then the order)."""
        used = [name for name in FILTERS if self.filters.get(name) is not None]
        walked = "id" if SORT_COLUMN[self.sort] is None else self.sort
        return tx.filtered("list_jobs", [*used, f"{walked}_{self.order}"])

    def params(self, cursor: Any) -> dict[str, Any]:
        """The query's parameters, after ``cursor`` (None: from the start)."""
        key, after_id = self._after(cursor)
        params = {name: self.filters.get(name) for name in FILTERS}
        params["dependency_of"] = params.pop("dependant_of")
        return {**params, "limit": self.limit, "after_key": key, "after_id": after_id}

    def _after(self, cursor: Any) -> tuple[Any, int]:
        if cursor is None or cursor == "":
            key = _HIGHEST if self.order == "desc" else _LOWEST
            return key, _FIRST_ID[self.order]
        if self.plain or SORT_COLUMN[self.sort] is None:
            try:
                return None, _job_id(int(cursor))
            except (TypeError, ValueError):
                raise BadCursor("not a cursor of this listing") from None
        return decode_cursor(str(cursor), self.sort, self.order)

    def cursor_after(self, row: JobRow) -> Any:
        """The cursor of the page after the one ``row`` ended."""
        if self.plain:
            return row["id"]
        column = SORT_COLUMN[self.sort]
        if column is None:
            return str(row["id"])
        return encode_cursor(row[column], row["id"], self.sort, self.order)


def encode_cursor(key: Any, job_id: int, sort: str, order: str) -> str:
    text = json.dumps([sort, order, key, job_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(text: str, sort: str, order: str) -> tuple[Any, int]:
    try:
        padded = text + "=" * (-len(text) % 4)
        made_for, made_order, key, job_id = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, TypeError):
        raise BadCursor("not a cursor of this listing") from None
    if (made_for, made_order) != (sort, order) or not isinstance(job_id, int):
        raise BadCursor(f"a cursor of another order than sort={sort}&order={order}")
    if not isinstance(key, int | float) or isinstance(key, bool) or not math.isfinite(key):
        raise BadCursor("not a cursor of this listing")
    if isinstance(key, int):
        key = _job_id(key)  # an integer key (a priority) fits where an id does
    return key, _job_id(job_id)


def _job_id(value: int) -> int:
    """An id a database integer holds (a larger one would overflow the driver)."""
    if not 0 <= value <= MAX_ID:
        raise BadCursor("not a cursor of this listing")
    return value
