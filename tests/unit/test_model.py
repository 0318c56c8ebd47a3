"""The state machine: one function computes every next status, and the SQL agrees with it."""

from __future__ import annotations

import re

import pytest

from taskframe.core import model
from taskframe.core.model import Event, IllegalTransition, Outcome, Status, next_status
from taskframe.server.storage.base import load_queries

BACKENDS = ("sqlite.sql", "postgres.sql")
# Quoted literals of the .sql files that are not statuses.
NOT_STATUSES = {
    *("$[", "]", "now", "taskframe_jobs", "taskframe_schema", "default", "paused"),
    *("public", "taskframe_jobs_"),  # the schema's NOTIFY channel name
    *("$.attempt", "attempt"),
    *("jobs", "jobs_v8", "id", "run", "INSERT", "DELETE"),
    # Fields of the JSON rows the set-based SQLite statements read (value ->> 'field').
    *("job_id", "lease_id", "worker_id", "status", "result", "error", "log", "traceback"),
    *("started_at", "finished_at", "run_at", "new_lease_id", "refund", "outcome"),
    *("depends_on", "deps_pending"),
}


def test_statuses_and_outcomes_are_string_enums():
    assert issubclass(Status, str) and issubclass(Outcome, str)
    assert Status.SCHEDULED == "scheduled" and Outcome.LEASE_EXPIRED == "lease_expired"
    assert model.STATUSES == (
        "waiting",
        "scheduled",
        "queued",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    )
    assert model.FINISHED == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


@pytest.mark.parametrize(
    ("current", "event", "flags", "expected"),
    [
        (None, Event.SUBMIT, {"due": True}, Status.QUEUED),
        (None, Event.SUBMIT, {"due": False}, Status.SCHEDULED),
        (Status.SCHEDULED, Event.PROMOTE, {}, Status.QUEUED),
        (Status.QUEUED, Event.LEASE, {}, Status.RUNNING),
        (Status.SCHEDULED, Event.CANCEL, {}, Status.CANCELLED),
        (Status.QUEUED, Event.CANCEL, {}, Status.CANCELLED),
        (Status.RUNNING, Event.CANCEL, {}, Status.RUNNING),
        (Status.FAILED, Event.RETRY, {}, Status.QUEUED),
        (Status.CANCELLED, Event.RETRY, {}, Status.QUEUED),
        (Status.CANCELLED, Event.RETRY, {"blocked": True}, Status.WAITING),
        (Status.RUNNING, Outcome.SUCCEEDED, {"cancel_requested": True}, Status.SUCCEEDED),
        (Status.RUNNING, Outcome.FAILED, {"may_retry": True, "due": False}, Status.SCHEDULED),
        (Status.RUNNING, Outcome.FAILED, {"may_retry": True, "due": True}, Status.QUEUED),
        (Status.RUNNING, Outcome.FAILED, {"may_retry": False}, Status.FAILED),
        (Status.RUNNING, Outcome.TIMED_OUT, {"may_retry": True, "due": False}, Status.SCHEDULED),
        (Status.RUNNING, Outcome.LEASE_EXPIRED, {"cancel_requested": True}, Status.CANCELLED),
        (Status.RUNNING, Outcome.CANCELLED, {"may_retry": True}, Status.CANCELLED),
        (Status.RUNNING, Outcome.RELEASED, {}, Status.QUEUED),
        (Status.RUNNING, Outcome.RELEASED, {"cancel_requested": True}, Status.CANCELLED),
        (None, Event.SUBMIT, {"blocked": True}, Status.WAITING),
        (Status.WAITING, Event.DEPENDENCIES_MET, {"due": True}, Status.QUEUED),
        (Status.WAITING, Event.DEPENDENCIES_MET, {"due": False}, Status.SCHEDULED),
        (Status.WAITING, Event.DEPENDENCY_FAILED, {}, Status.CANCELLED),
        (Status.WAITING, Event.CANCEL, {}, Status.CANCELLED),
    ],
)
def test_next_status(current, event, flags, expected):
    assert next_status(current, event, **flags) is expected


@pytest.mark.parametrize(
    ("current", "event"),
    [
        (Status.SUCCEEDED, Event.CANCEL),
        (Status.FAILED, Event.CANCEL),
        (Status.QUEUED, Event.RETRY),
        (Status.SCHEDULED, Event.LEASE),
        (Status.QUEUED, Event.PROMOTE),
        (Status.QUEUED, Outcome.SUCCEEDED),
        (Status.SUCCEEDED, Event.RETRY),
        (Status.RUNNING, Event.SUBMIT),
        (Status.WAITING, Event.LEASE),
        (Status.QUEUED, Event.DEPENDENCIES_MET),
        (Status.RUNNING, Event.DEPENDENCY_FAILED),
    ],
)
def test_illegal_transitions_raise(current, event):
    with pytest.raises(IllegalTransition):
        next_status(current, event)


def test_the_transitions_table_is_derived_from_the_function():
    assert model.TRANSITIONS[Status.WAITING] == {
        Status.QUEUED,
        Status.SCHEDULED,
        Status.CANCELLED,
    }
    assert model.TRANSITIONS[Status.SCHEDULED] == {Status.QUEUED, Status.CANCELLED}
    assert model.TRANSITIONS[Status.QUEUED] == {Status.RUNNING, Status.CANCELLED}
    assert model.TRANSITIONS[Status.RUNNING] == {
        Status.SUCCEEDED,
        Status.FAILED,
        Status.CANCELLED,
        Status.QUEUED,
        Status.SCHEDULED,
    }
    assert model.TRANSITIONS[Status.SUCCEEDED] == frozenset()
    assert model.can_transition("failed", "queued") and not model.can_transition("queued", "failed")


# ------------------------------------------------------------- the SQL agrees


def _literals(sql: str) -> list[str]:
    return re.findall(r"'([^']*)'", re.sub(r"--[^\n]*", "", sql))


def _where_statuses(sql: str) -> set[str]:
    """The statuses a statement's WHERE clause accepts (``status = 'x'`` or ``IN (...)``)."""
    where = sql[sql.upper().index("WHERE") :]
    found = set(re.findall(r"(?<!SET )(?<!\w)(?:jobs\.)?status = '(\w+)'", where))
    for group in re.findall(r"status IN \(([^)]*)\)", where):
        found |= set(re.findall(r"'(\w+)'", group))
    return found


def _set_status(sql: str) -> str:
    [status] = re.findall(r"SET status = '(\w+)'", sql)
    return status


def _accepting(event: Event | Outcome, **flags: bool) -> set[str]:
    accepted = set()
    for status in Status:
        try:
            next_status(status, event, **flags)
        except IllegalTransition:
            continue
        accepted.add(status.value)
    return accepted


@pytest.mark.parametrize("filename", BACKENDS)
def test_every_status_literal_in_the_sql_is_a_status(filename):
    queries = load_queries(filename)
    literals = {literal for sql in queries.values() for literal in _literals(sql)}
    assert literals - NOT_STATUSES <= set(model.STATUSES)
    assert set(model.STATUSES) <= literals  # and every status is in the schema's use


@pytest.mark.parametrize("filename", BACKENDS)
def test_the_sql_guards_follow_next_status(filename):
    q = load_queries(filename)
    # Submission: due -> queued, not due -> scheduled.
    [case] = re.findall(r"THEN '(\w+)' ELSE '(\w+)' END", q["insert_job"])
    assert case == (next_status(None, Event.SUBMIT, due=False), next_status(None, Event.SUBMIT))
    # Promotion, leasing, retry: from the statuses the function accepts, to its answer.
    for query, event, source in (
        ("promote_due", Event.PROMOTE, Status.SCHEDULED),
        ("lease_jobs", Event.LEASE, Status.QUEUED),
        ("retry_job", Event.RETRY, Status.FAILED),
    ):
        assert _where_statuses(q[query]) == _accepting(event), query
        assert _set_status(q[query]) == next_status(source, event), query
    # Cancel: not started yet -> cancelled now; running -> still running, asked to stop.
    cancellable = {s.value for s in Status if _accepting(Event.CANCEL) >= {s.value}}
    cancelled_now = {s for s in cancellable if next_status(s, Event.CANCEL) == Status.CANCELLED}
    assert _where_statuses(q["cancel_queued"]) == cancelled_now
    assert _set_status(q["cancel_queued"]) == Status.CANCELLED
    assert _where_statuses(q["request_cancel"]) == cancellable - cancelled_now
    # Every change to an attempt is guarded by the one status an attempt can end from.
    ending = set.union(*(_accepting(outcome) for outcome in Outcome))
    for query in ("end_attempts", "extend_lease", "expired_attempts"):
        assert _where_statuses(q[query]) == ending, query
    # Dependencies: only a waiting job moves on when they finish, as next_status says.
    waiting = _accepting(Event.DEPENDENCIES_MET)
    assert waiting == _accepting(Event.DEPENDENCY_FAILED) == {Status.WAITING}
    assert _where_statuses(q["resolve_dependants"]) == waiting
    resolved = set(re.findall(r"THEN '(\w+)'|ELSE '(\w+)'", q["resolve_dependants"]))
    assert {s for pair in resolved for s in pair if s} == {
        next_status(Status.WAITING, Event.DEPENDENCY_FAILED),
        Status.WAITING,  # not the last dependency yet
        next_status(Status.WAITING, Event.DEPENDENCIES_MET, due=True),
        next_status(Status.WAITING, Event.DEPENDENCIES_MET, due=False),
    }
    assert _set_status(q["start_waiting"]) == next_status(None, Event.SUBMIT, blocked=True)
    # The routed lease takes what the plain one takes.
    assert _where_statuses(q["lease_picked"]) == _accepting(Event.LEASE)
    assert _set_status(q["lease_picked"]) == next_status(Status.QUEUED, Event.LEASE)
    # Pruning takes only finished jobs.
    assert _where_statuses(q["prunable_jobs"]) == set(model.FINISHED)
