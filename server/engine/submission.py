"""New jobs: checked against the executors' payload schemas, then inserted."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any, cast

from taskframe.core import json_codec
from taskframe.core.errors import ErrorCode, JobConflict
from taskframe.core.executor import Executor
from taskframe.core.schemas import DEFAULT_MAX_ATTEMPTS, DEFAULT_PRIORITY, DEFAULT_QUEUE
from taskframe.server.config import ServerConfig
from taskframe.server.engine import dependencies
from taskframe.server.engine.group_commit import GroupCommitter
from taskframe.server.engine.payloads import load_payloads
from taskframe.server.engine.publisher import Changes, Publisher
from taskframe.server.storage import (
    JobRow,
    Store,
    StoreUnavailable,
    Transaction,
    counts,
    job_row,
    maybe_job_rows,
)

#: The plugins' ``taskframe_validate_job``: a job -> its problems by field (or None).
JobCheck = Callable[[dict[str, Any]], "dict[str, Any] | None"]
#: A job as submitted: its row and whether this submission created it (False: its
#: idempotency key named a job already there).
Submitted = tuple[JobRow, bool]


def jobs_errors(
    jobs: list[dict[str, Any]], executors: Mapping[str, Executor], check: JobCheck | None = None
) -> dict[int, dict[str, Any]]:
    """The problems of (envelope-valid) jobs by index: unknown type, invalid payload,
    a plugin's. Payloads are loaded a batch at a time (see :mod:`.payloads`).

    Fields a job omits get their defaults first (see :func:`apply_defaults`).
    """
    problems: dict[int, dict[str, Any]] = {}
    for index, job in enumerate(jobs):
        apply_defaults(job, executors.get(job["type"]))
        found = check(job) if check is not None else None
        if found:
            problems[index] = dict(found)
    for index, found in load_payloads(jobs, executors).items():
        problems[index] = {**problems.get(index, {}), **found}
    return problems


def job_errors(
    job: dict[str, Any], executors: Mapping[str, Executor], check: JobCheck | None = None
) -> dict[str, Any]:
    """The problems of one job (see :func:`jobs_errors`)."""
    return jobs_errors([job], executors, check).get(0, {})


_API_DEFAULTS = (
    ("priority", DEFAULT_PRIORITY),
    ("max_attempts", DEFAULT_MAX_ATTEMPTS),
    ("queue", DEFAULT_QUEUE),
)


def apply_defaults(job: dict[str, Any], executor: Executor | None) -> None:
    """The job type's defaults (``@task(queue=...)``), else the API's, for omitted fields.

    A ``timeout`` omitted or null takes the type's; without one, the server's
    ``--default-timeout`` applies later.
    """
    defaults = executor.defaults if executor is not None else {}
    for name, fallback in _API_DEFAULTS:
        if name not in job:
            job[name] = defaults.get(name, fallback)
    if job.get("timeout") is None and defaults.get("timeout") is not None:
        job["timeout"] = defaults["timeout"]


class JobInserter:
    """Inserts validated jobs; honours idempotency keys.

    ``submit`` inserts a list all or nothing (``POST /jobs/batch``);
    ``submit_one`` shares one commit with concurrent single submissions.
    Every job is prepared (serialised, hashed) before any transaction, so a
    job that cannot be prepared fails its own request and no one else's.
    """

    def __init__(
        self,
        store: Store,
        config: ServerConfig,
        clock: Callable[[], float],
        publisher: Publisher,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.publisher = publisher
        self._group_submit: GroupCommitter[dict[str, Any], Submitted] = GroupCommitter(
            self._insert_single_jobs,
            shared_failure=lambda exc: isinstance(exc, StoreUnavailable),
        )

    def submit(self, jobs: list[dict[str, Any]]) -> list[Submitted]:
        """Insert validated jobs in one transaction; return (row, created) for each.

        A job whose idempotency key exists already is not inserted: the
        existing row comes back with created=False. The same key with a
        different request raises JobConflict, and nothing is written.
        """
        now = self.clock()
        [outcome] = self._insert_units([[self._new_job_params(job, now) for job in jobs]])
        if isinstance(outcome, JobConflict):
            raise outcome
        return outcome

    def submit_one(self, job: dict[str, Any]) -> Submitted:
        """Like ``submit([job])``, sharing one transaction with concurrent submissions."""
        return self._group_submit(self._new_job_params(job, self.clock()))

    def _insert_single_jobs(self, prepared: list[dict[str, Any]]) -> list[Submitted | JobConflict]:
        if all(_plain(params) for params in prepared):
            return list(self._insert_plain(prepared))
        outcomes = self._insert_units([[params] for params in prepared])
        return [o if isinstance(o, JobConflict) else o[0] for o in outcomes]

    def _insert_plain(self, prepared: list[dict[str, Any]]) -> list[Submitted]:
        """:meth:`_insert_units` for jobs without key or dependencies (nearly every
        submission): one set-based insert, their counts, nothing that can conflict."""
        with self.store.transaction() as tx:
            rows = tx.insert_jobs(prepared)
            counts.added(tx, rows)
            self.publisher.before_commit(tx, Changes(self.clock(), submitted=rows))
        return [(row, True) for row in rows]

    def _insert_units(
        self, units: list[list[dict[str, Any]]]
    ) -> list[list[Submitted] | JobConflict]:
        """Insert each unit (the prepared parameters of its jobs) all or nothing,
        in one transaction.

        A unit whose idempotency key conflicts yields a JobConflict instead of
        its rows; the other units are committed.
        """
        outcomes: list[list[Submitted] | JobConflict | None] = [None] * len(units)
        inserted: list[JobRow] = []  # as inserted, for the counts (no trigger counts inserts)
        with self.store.transaction() as tx:
            # Jobs without key (nearly all) go in one set-based insert, whatever unit
            # they belong to: nothing about them can conflict. Their dependencies are
            # attached after it, a fixed number of statements for all of them.
            keyless = [i for i, unit in enumerate(units) if all(_keyless(p) for p in unit)]
            rows = tx.insert_jobs([_without_refs(p) for i in keyless for p in units[i]])
            attaching: list[tuple[JobRow, list[int]]] = []
            rows_of: dict[int, list[JobRow]] = {}
            start = 0
            for i in keyless:
                rows_of[i] = rows[start : start + len(units[i])]
                start += len(units[i])
                for job_params, row in zip(units[i], rows_of[i], strict=True):
                    deps = _dependency_ids(job_params, rows_of[i])
                    if deps:
                        attaching.append((row, deps))
                        # Counted and published as inserted, with the ids it depends on.
                        row = cast(JobRow, {**row, "depends_on": _depends_on(deps)})
                    inserted.append(row)
            attached = {row["id"]: row for row in dependencies.attach_all(tx, attaching)}
            for i, unit_rows in rows_of.items():
                outcomes[i] = [(attached.get(row["id"], row), True) for row in unit_rows]
            for i, params in enumerate(units):
                if outcomes[i] is not None:
                    continue
                if any("_depends_on" in p for p in params):
                    outcomes[i] = self._insert_chain(tx, params, inserted)
                else:
                    conflict = self._key_conflict(tx, params)
                    outcomes[i] = conflict or self._insert_keyed(tx, params, inserted)
            if inserted:
                counts.added(tx, inserted)
                # Other servers hear of them at commit; this one's waiters are woken by
                # the intake, for each caller (submissions share this commit).
                self.publisher.before_commit(tx, Changes(self.clock(), submitted=inserted))
        return cast("list[list[Submitted] | JobConflict]", outcomes)

    def _insert_chain(
        self, tx: Transaction, unit: list[dict[str, Any]], inserted: list[JobRow]
    ) -> list[Submitted]:
        """Insert jobs with dependencies one by one, in order: ``("ref", n)`` names the
        n-th job of this unit, inserted before it. Raises what a conflict or a missing
        dependency raises, rolling back the whole unit (it has its own transaction)."""
        results: list[Submitted] = []
        for prepared in unit:
            deps = _dependency_ids(prepared, [row for row, _ in results])
            params = {**_without_refs(prepared), "depends_on": _depends_on(deps)}
            conflict = self._key_conflict(tx, [params])
            if conflict is not None:
                raise conflict
            outcome = self._insert_keyed(tx, [params], inserted)
            if isinstance(outcome, JobConflict):
                raise outcome
            [(row, created)] = outcome
            if created and deps:
                [row] = dependencies.attach_all(tx, [(row, deps)])
            results.append((row, created))
        return results

    def _insert_keyed(
        self, tx: Transaction, params: list[dict[str, Any]], inserted: list[JobRow]
    ) -> list[Submitted] | JobConflict:
        """Insert jobs that may carry idempotency keys; (row, created) for each.

        The rows inserted are added to ``inserted`` (to be counted by the caller).
        """
        results: list[Submitted] = []
        for job_params, row in zip(
            params, maybe_job_rows(tx.returning_many("insert_job", params)), strict=True
        ):
            if row is not None:
                results.append((row, True))
                inserted.append(row)
                continue
            # The key exists: committed meanwhile by a concurrent submission.
            existing = job_row(tx.one("get_job_by_key", job_params))
            assert existing is not None  # the insert skipped the row for its key
            if existing["request_hash"] != job_params["request_hash"]:
                conflict = _key_used(job_params["idempotency_key"], existing["id"])
                if len(params) > 1:
                    raise conflict  # a batch is all or nothing: roll back its inserts
                return conflict
            results.append((existing, False))
        return results

    def _key_conflict(self, tx: Transaction, params: list[dict[str, Any]]) -> JobConflict | None:
        """A JobConflict when a key in ``params`` was used for a different request."""
        seen: dict[str, str] = {}
        for job_params in params:
            key = job_params["idempotency_key"]
            if key is None:
                continue
            if seen.setdefault(key, job_params["request_hash"]) != job_params["request_hash"]:
                return JobConflict(
                    f"idempotency key {key!r} is used twice for different jobs",
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                )
            existing = job_row(tx.one("get_job_by_key", job_params))
            if existing is not None and existing["request_hash"] != job_params["request_hash"]:
                return _key_used(key, existing["id"])
        return None

    def new_job_params(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        """The row of a new job, ready for :meth:`insert_new` (schedules prepare theirs)."""
        return self._new_job_params(job, now)

    def insert_new(
        self, tx: Transaction, prepared: list[dict[str, Any]], changes: Changes
    ) -> list[JobRow]:
        """Insert prepared jobs in the caller's transaction, counted and recorded on its
        ``changes`` (published after its commit); return those created. A job whose
        idempotency key is taken is left out: schedules fire a batch of times with their
        advance, and a time taken was fired already (by another server)."""
        created = [row for row in maybe_job_rows(tx.returning_many("insert_job", prepared)) if row]
        counts.added(tx, created)
        changes.submitted += created
        return created

    def _new_job_params(self, job: dict[str, Any], now: float) -> dict[str, Any]:
        """The row of a new job, ready to insert: anything that can fail fails here."""
        apply_defaults(job, None)  # a caller that skipped job_errors (tests, embedders)
        if "run_at" in job:
            run_at = job["run_at"].timestamp()
        else:
            run_at = now + job.get("delay", 0.0)
        timeout = job.get("timeout")
        if timeout is None:
            timeout = self.config.default_timeout
        # 0 means no limit, for a job as for --default-timeout; stored as NULL.
        timeout = timeout or None
        key = job.get("idempotency_key")
        request_hash = None
        if key is not None:
            fingerprint = {k: v for k, v in job.items() if k != "idempotency_key"}
            canonical = json.dumps(fingerprint, sort_keys=True, default=str)
            request_hash = hashlib.sha256(canonical.encode()).hexdigest()
        return {
            "type": job["type"],
            # Canonical compact JSON: answers splice this text in as it is.
            "payload": json_codec.dumps(job["payload"]).decode(),
            "priority": job["priority"],
            "max_attempts": job["max_attempts"],
            "timeout": timeout,
            "run_at": run_at,
            "created_at": now,
            "idempotency_key": key,
            "request_hash": request_hash,
            "notify_url": job.get("notify_url"),
            "queue": job.get("queue", "default"),
            "depends_on": None,
            "on_dependency_failure": job.get("on_dependency_failure"),
            # Resolved to ids at insertion ("$N" names a job of the same batch).
            **({"_depends_on": job["depends_on"]} if "depends_on" in job else {}),
        }


def _keyless(params: dict[str, Any]) -> bool:
    """A job without idempotency key: inserted without any check."""
    return params["idempotency_key"] is None


def _plain(params: dict[str, Any]) -> bool:
    """A job without idempotency key or dependencies: inserted as it is."""
    return params["idempotency_key"] is None and "_depends_on" not in params


def _dependency_ids(params: dict[str, Any], unit_rows: list[JobRow]) -> list[int]:
    """The ids a job depends on, its ``("ref", n)`` naming the n-th row of its unit."""
    if "_depends_on" not in params:  # nearly all: spare them the list
        return []
    return [
        unit_rows[dep[1]]["id"] if isinstance(dep, tuple) else dep
        for dep in params["_depends_on"] or ()
    ]


def _without_refs(params: dict[str, Any]) -> dict[str, Any]:
    """The row to insert, without the dependencies as submitted (nearly all have none)."""
    if "_depends_on" not in params:
        return params
    return {k: v for k, v in params.items() if k != "_depends_on"}


def _depends_on(deps: list[int]) -> str | None:
    """The ``depends_on`` column: the ids, sorted, as JSON."""
    return json.dumps(sorted(set(deps))) if deps else None


def _key_used(key: str, job_id: int) -> JobConflict:
    return JobConflict(
        f"idempotency key {key!r} was already used for another job (id {job_id})",
        ErrorCode.IDEMPOTENCY_CONFLICT,
    )
