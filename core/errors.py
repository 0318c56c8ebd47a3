"""Errors of the job model, shared by the scheduler and the API that maps them to HTTP."""

from __future__ import annotations


class JobNotFound(Exception):
    """No job has this id (HTTP 404)."""


class JobConflict(Exception):
    """The job is not in a state that allows the request (HTTP 409)."""
