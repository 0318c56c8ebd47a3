"""``GET /jobs`` in any order, and ``GET /jobs/{id}/dependants``: pages with keyset
cursors (server/engine/listing.py)."""

from __future__ import annotations

from typing import Any

import falcon

from taskframe.core import schemas
from taskframe.server.engine.job_ops import JobOps
from taskframe.server.engine.listing import BadCursor, Listing
from taskframe.server.http.errors import validation_error
from taskframe.server.http.http_io import load_query
from taskframe.server.storage.representation import job_answer, job_summary

#: Filters given as times (ISO 8601 in the API), compared as epoch seconds.
TIME_FILTERS = ("created_after", "created_before", "finished_after", "finished_before")
PLAIN_FILTERS = ("status", "type", "queue", "key")


def filters_of(loaded: dict[str, Any]) -> dict[str, Any]:
    """The listing filters of a loaded query or body: times as epoch seconds; an empty
    text is no filter (as a form's "any" sends it)."""
    found = {name: loaded[name] for name in PLAIN_FILTERS if loaded.get(name)}
    for name in TIME_FILTERS:
        if loaded.get(name) is not None:
            found[name] = loaded[name].timestamp()
    return found


def list_page(jobs: JobOps, listing: Listing, cursor: Any, full: bool = False) -> dict[str, Any]:
    """One page as the API answers it: the jobs and the cursor of the next page."""
    try:
        rows = jobs.list_jobs(None, None, listing.limit, cursor, full, listing)
    except BadCursor as exc:
        raise validation_error({"cursor": [str(exc)]}) from None
    # A full page may stop short of the limit (the answer cap): go on from its last job.
    more = len(rows) == listing.limit or (full and rows)
    shown = job_answer if full else job_summary
    return {
        "jobs": [shown(row) for row in rows],
        "next_cursor": listing.cursor_after(rows[-1]) if more else None,
    }


def listing_of(query: dict[str, Any]) -> Listing:
    return Listing(filters_of(query), query["sort"], query["order"], query["limit"])


class Dependants:
    """``GET /jobs/{id}/dependants``: the jobs that name this one in ``depends_on``."""

    def __init__(self, jobs: JobOps) -> None:
        self.jobs = jobs
        self.query_schema = schemas.DependantsQuerySchema()

    def on_get(self, req: falcon.Request, resp: falcon.Response, job_id: int) -> None:
        query = load_query(req, self.query_schema)
        self.jobs.get(job_id)  # 404 for an unknown job
        listing = Listing({"dependant_of": job_id}, "id", "asc", query["limit"])
        resp.media = {"job_id": job_id, **list_page(self.jobs, listing, query.get("cursor"))}
