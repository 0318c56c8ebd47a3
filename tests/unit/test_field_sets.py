"""One job, three descriptions: the submit schema, the server's answer and the client's Job.

A field added to one of them and forgotten in another fails here (issue 18):
the answer shows every stored field of a submission, the documented answer
schema lists what the answer holds, and the client's ``Job`` has a field for
each (rather than leaving it in ``extra``).
"""

from __future__ import annotations

import dataclasses

from taskframe.client.models import Job
from taskframe.core import schemas
from taskframe.server.config import ServerConfig
from taskframe.server.engine.scheduler import Scheduler
from taskframe.server.http import answer_schemas as answers
from taskframe.server.storage.representation import job_json

#: Submission fields that are not kept as such: a delay becomes run_at.
INPUT_ONLY = {"delay"}
#: Answer fields only the lease answer has (to the worker holding the lease): the
#: documented schema says so in their descriptions.
LEASE_ONLY = {
    name
    for name, field in answers.JobSchema._declared_fields.items()
    if field.metadata.get("description", "").startswith("only in lease answers")
}


def answer_fields(store) -> set[str]:
    scheduler = Scheduler(store, ServerConfig())
    [(row, _)] = scheduler.submit([schemas.SubmitJobSchema().load({"type": "sleep"})])
    return set(job_json(row))


def test_the_answer_shows_every_field_a_submission_keeps(store):
    submitted = set(schemas.SubmitJobSchema._declared_fields) - INPUT_ONLY
    assert submitted <= answer_fields(store)


def test_the_documented_answer_schema_lists_the_answer(store):
    assert {"lease_id", "dependencies"} <= LEASE_ONLY
    documented = set(answers.JobSchema._declared_fields) - LEASE_ONLY
    assert documented == answer_fields(store)


def test_the_clients_job_has_a_field_for_everything_the_answer_holds(store):
    client_fields = {f.name for f in dataclasses.fields(Job)} - {"extra", "raw"}
    assert client_fields == answer_fields(store)
