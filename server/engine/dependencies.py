"""Job dependencies: attached at submission, resolved when a dependency finishes.

Each dependency of a waiting job is an *edge* (a ``job_dependencies`` row)
until it is resolved; resolving deletes the edge, so ``deps_pending`` is the
number of edges a waiting job has left, and an edge counts once however often
its dependency finishes (a retry). A dependant becomes ready only when its
last edge is resolved: a failed dependency whose edge waits its turn keeps it
waiting, never running.

Resolution starts in the transaction of the dependency's final change
(completion, reap, release, cancel) and takes at most ``budget`` edges there.
What is left is marked durably (``dependency_cascades``) in that same
transaction and resolved by the housekeeper a chunk per transaction
(:func:`cascade`), so that a job with 100,000 dependants does not hold the
database for the time of all of them, and a crash only delays the rest. Jobs
without dependants pay nothing: their row says so (``has_dependants``).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from taskframe.core import model
from taskframe.core.model import Event, Status
from taskframe.server.storage import JobRow, Transaction, job_row, job_rows


class MissingDependencies(Exception):
    """Some ``depends_on`` ids name no job (HTTP 422)."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__("unknown dependencies")
        self.errors = errors


@dataclass
class Resolution:
    """What resolving did: the dependants it moved, and whether some are left for later."""

    changed: list[JobRow] = field(default_factory=list)
    pending: bool = False


def attach_all(tx: Transaction, jobs: list[tuple[JobRow, list[int]]]) -> list[JobRow]:
    """Record the dependencies of jobs just inserted, in order, and give each its
    starting status: a fixed number of statements for the whole list.

    Only the dependencies that have not finished get an edge: the others are
    resolved already, whatever becomes of them later. A job may depend on an
    earlier one of ``jobs``: the status it gets here is the one that counts.
    A job cancelled by a failed dependency finished when it was created. Raises
    MissingDependencies for the first job naming an id no job has.
    """
    if not jobs:
        return []
    wanted = sorted({i for _, deps in jobs for i in deps})
    # One lock of every dependency, in id order (deadlock-free).
    status = {dep["id"]: dep["status"] for dep in tx.all("lock_dependencies", {"ids": wanted})}
    dependants: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    changes: dict[int, dict[str, Any]] = {}
    for row, dependency_ids in jobs:
        ids = sorted(set(dependency_ids))
        missing = [i for i in ids if i not in status]
        if missing:
            raise MissingDependencies({"depends_on": [f"no job has id {i}" for i in missing]})
        # Every dependency, kept for good: a job's page lists its dependants.
        dependants += [{"depends_on": i, "job_id": row["id"]} for i in ids]
        change = {"id": row["id"], "depends_on": json.dumps(ids), "status": row["status"]}
        change |= {"deps_pending": 0, "finished_at": None, "error": None}
        failed = [i for i in ids if status[i] in (Status.FAILED, Status.CANCELLED)]
        pending = [i for i in ids if status[i] not in model.FINISHED]
        if failed and row["on_dependency_failure"] != "run":
            model.next_status(None, Event.SUBMIT, blocked=True)  # waiting, then
            change["status"] = model.next_status(Status.WAITING, Event.DEPENDENCY_FAILED)
            change |= {
                "finished_at": row["created_at"],
                "error": _failure(failed[0], status[failed[0]]),
            }
        elif pending:
            change["status"] = model.next_status(None, Event.SUBMIT, blocked=True)
            change["deps_pending"] = len(pending)
            edges += [{"depends_on": i, "job_id": row["id"]} for i in pending]
        status[row["id"]] = change["status"]
        if change["status"] != row["status"] or change["depends_on"] != row["depends_on"]:
            changes[row["id"]] = change
    tx.run_set("insert_dependants", dependants)
    started = job_rows(tx.run_set("attach_dependencies", list(changes.values())))
    updated = {r["id"]: r for r in started}
    if edges:
        tx.run("mark_dependencies", {"ids": sorted({e["depends_on"] for e in edges})})
        tx.run_set("insert_dependencies", edges)
    return [_changed(updated.get(row["id"])) if row["id"] in changes else row for row, _ in jobs]


def resolve(
    tx: Transaction,
    finished: Iterable[JobRow | None],
    now: float,
    budget: int,
    cascading: Iterable[int] = (),
) -> Resolution:
    """Move on the waiting dependants of jobs that just finished, ``budget`` edges at most.

    A dependant cancelled because of a failure is itself finished: its own
    dependants follow, in the same transaction while the budget lasts. A job
    whose edges are not all resolved gets a cascade marker (the housekeeper
    goes on); ``cascading`` names the jobs that have one already, removed
    once their last edge is resolved.
    """
    marked = set(cascading)
    frontier = deque(
        row
        for row in finished
        if row is not None and row["has_dependants"] and row["status"] in model.FINISHED
    )
    done = Resolution()
    while frontier:
        job = frontier.popleft()
        if budget <= 0:
            tx.run("start_cascade", {"id": job["id"]})
            done.pending = True
            continue
        taken = sorted(ref["job_id"] for ref in tx.all("take_dependants", _take(job, budget)))
        budget -= len(taken)
        if budget <= 0:  # maybe more edges: the housekeeper looks (at worst finds none)
            if job["id"] not in marked:
                tx.run("start_cascade", {"id": job["id"]})
            done.pending = True
        elif job["id"] in marked:
            tx.run("end_cascade", {"id": job["id"]})
        if not taken:
            continue
        for row in _resolve_chunk(tx, job, taken, now):
            if row["status"] != Status.WAITING:
                done.changed.append(row)
                if row["status"] == Status.CANCELLED and row["has_dependants"]:
                    frontier.append(row)
    return done


def _take(job: JobRow, budget: int) -> dict[str, Any]:
    return {"id": job["id"], "limit": budget}


def _resolve_chunk(tx: Transaction, job: JobRow, ids: list[int], now: float) -> list[JobRow]:
    """One dependency fewer for the waiting jobs among ``ids``; their rows as updated."""
    failed = job["status"] != Status.SUCCEEDED
    # The SQL applies next_status's rules, set-based (test_model checks its guard).
    tx.all("lock_dependants", {"ids": ids})
    params = {
        "ids": ids,
        "failed": failed,
        "now": now,
        "error": _failure(job["id"], job["status"]) if failed else None,
    }
    return job_rows(tx.all("resolve_dependants", params))


def cascade(tx: Transaction, now: float, budget: int) -> Resolution | None:
    """Resolve one chunk of a marked job's dependants (the housekeeper); None: none marked."""
    marker = tx.one("next_cascades", {"limit": 1})
    if marker is None:
        return None
    job = job_row(tx.one("get_job", {"id": marker["job_id"]}))
    if job is None or job["status"] not in model.FINISHED or not job["has_dependants"]:
        tx.run("end_cascade", {"id": marker["job_id"]})  # cannot happen: retry and prune wait
        return Resolution()
    return resolve(tx, [job], now, budget, cascading=[job["id"]])


def _changed(row: JobRow | None) -> JobRow:
    """The row a guarded update returned: this transaction inserted it, so it is there."""
    if row is None:  # pragma: no cover - the job was inserted in this very transaction
        raise RuntimeError("a job inserted in this transaction vanished")
    return row


def _failure(job_id: int, status: str) -> str:
    return f"dependency {job_id} {status}"


def ids_of(row: JobRow) -> list[int]:
    depends_on = row.get("depends_on")
    return json.loads(depends_on) if depends_on else []


def results(tx: Transaction, rows: Iterable[JobRow]) -> dict[int, dict[str, Any]]:
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
