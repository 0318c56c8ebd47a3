"""Job dependencies: attached at submission, resolved when a dependency finishes.

Resolution runs in the same transaction as the dependency's final change
(completion, reap, release, cancel), so a dependant is never left waiting on
a job that is already over, whatever server or process dies afterwards. Jobs
without dependants pay nothing: their row says so (``has_dependants``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from taskframe.core import model
from taskframe.core.model import Event, Status
from taskframe.server.storage import Row, Transaction


class MissingDependencies(Exception):
    """Some ``depends_on`` ids name no job (HTTP 422)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("unknown dependencies")
        self.errors = errors


def attach(tx: Transaction, row: Row, dependency_ids: list[int], now: float) -> Row:
    """Record ``row``'s dependencies (all exist) and give it its starting status."""
    ids = sorted(set(dependency_ids))
    found = {dep["id"]: dep["status"] for dep in tx.all("lock_dependencies", {"ids": ids})}
    missing = [i for i in ids if i not in found]
    if missing:
        raise MissingDependencies({"depends_on": [f"no job has id {i}" for i in missing]})
    tx.run("mark_dependencies", {"ids": ids})
    tx.run_many("insert_dependency", [{"depends_on": i, "job_id": row["id"]} for i in ids])
    run_anyway = row["on_dependency_failure"] == "run"
    failed = [i for i in ids if found[i] in (Status.FAILED, Status.CANCELLED)]
    pending = [i for i in ids if found[i] not in model.FINISHED]
    if not pending and not (failed and not run_anyway):
        return row  # queued or scheduled, as inserted
    model.next_status(None, Event.SUBMIT, blocked=True)  # waiting
    waiting = _changed(tx.one("start_waiting", {"id": row["id"], "pending": len(pending)}))
    if failed and not run_anyway:
        model.next_status(Status.WAITING, Event.DEPENDENCY_FAILED)  # cancelled
        error = _failure(failed[0], found[failed[0]])
        return _changed(tx.one("dependency_failed", {"id": row["id"], "now": now, "error": error}))
    return waiting


def resolve(tx: Transaction, finished: Iterable[Row | None], now: float) -> list[Row]:
    """Move on the waiting dependants of jobs that just finished; return the changed rows.

    A dependant cancelled because of a failure is itself finished: its own
    dependants follow, in the same transaction.
    """
    frontier = [
        row
        for row in finished
        if row is not None and row["has_dependants"] and row["status"] in model.FINISHED
    ]
    changed: list[Row] = []
    while frontier:
        done = frontier.pop(0)
        for ref in tx.all("waiting_dependants", {"id": done["id"]}):
            dependant = tx.one("dependency_done", {"id": ref["id"]})
            if dependant is None:
                continue  # not waiting (cancelled by a client, or already moved on)
            ok = done["status"] == Status.SUCCEEDED or dependant["on_dependency_failure"] == "run"
            if not ok:
                model.next_status(Status.WAITING, Event.DEPENDENCY_FAILED)
                error = _failure(done["id"], done["status"])
                failed = tx.one("dependency_failed", {"id": ref["id"], "now": now, "error": error})
                if failed is not None:  # None: not waiting any more (the row is locked)
                    changed.append(failed)
                    frontier.append(failed)
            elif dependant["deps_pending"] <= 0:
                due = dependant["run_at"] <= now
                status = model.next_status(Status.WAITING, Event.DEPENDENCIES_MET, due=due)
                ready = tx.one("dependencies_met", {"id": ref["id"], "status": status.value})
                if ready is not None:
                    changed.append(ready)
    return changed


def _changed(row: Row | None) -> Row:
    """The row a guarded update returned: this transaction inserted it, so it is there."""
    if row is None:  # pragma: no cover - the job was inserted in this very transaction
        raise RuntimeError("a job inserted in this transaction vanished")
    return row


def _failure(job_id: int, status: str) -> str:
    return f"dependency {job_id} {status}"


def ids_of(row: Row) -> list[int]:
    return [] if not row.get("depends_on") else json.loads(row["depends_on"])


def results(tx: Transaction, rows: Iterable[Row]) -> dict[int, dict[str, Any]]:
    """{job id: {dependency id (text): its result}} for the leased ``rows`` with dependencies."""
    wanted = {row["id"]: ids_of(row) for row in rows if row.get("depends_on")}
    if not wanted:
        return {}
    ids = sorted({i for deps in wanted.values() for i in deps})
    found = {
        dep["id"]: None if dep["result"] is None else json.loads(dep["result"])
        for dep in tx.all("dependency_results", {"ids": ids})
    }
    return {job: {str(i): found.get(i) for i in deps} for job, deps in wanted.items()}
