"""The API's input limits, in one place: the schemas (core/schemas.py) and their fast
loaders (core/quick_load.py) both check against these, so they cannot disagree."""

from __future__ import annotations

from datetime import datetime, timezone

MIN_PRIORITY = 1
MAX_PRIORITY = 10
MAX_ATTEMPTS = 100  # attempts one job may be submitted with
#: The longest time limit of one attempt a job may ask for (a week).
MAX_TIMEOUT = 7 * 86400
#: The longest a job may be held back (a year).
MAX_DELAY = 365 * 86400
#: Characters of an identifier (job type, idempotency key, worker id, lease id, host).
MAX_ID_TEXT = 200
MAX_BATCH = 1000
MAX_LEASE_BATCH = 500
#: Entries per ``POST /heartbeats`` and completions per ``POST /lease``: one
#: request holds the write lock for a few milliseconds at most.
MAX_HEARTBEATS = 1000
MAX_COMPLETIONS = 1000
MAX_TYPES = 1000  # job types one lease request may name
MAX_WAIT = 60.0
#: Characters of a failed attempt's error kept.
MAX_ERROR = 10000
#: Characters of an attempt's log kept (the worker keeps the tail): 64 KiB.
MAX_ATTEMPT_LOG = 65536
#: Characters of a failed attempt's traceback kept (the worker keeps the tail): 16 KiB.
MAX_TRACEBACK = 16384
#: The longest delay before the next attempt an executor may ask for (a week).
MAX_RETRY_AFTER = 7 * 86400.0
#: Characters of a job's progress message kept.
MAX_PROGRESS_MESSAGE = 200
#: Slots a worker may say it has; jobs a concurrency limit may let run.
MAX_SLOTS = 100000
MAX_DEPENDENCIES = 100  # jobs one job may depend on

MAX_ID = 2**63 - 1  # the largest id a database integer column holds
MIN_RUN_AT = datetime(1970, 1, 1, tzinfo=timezone.utc)
MAX_RUN_AT = datetime(9999, 1, 1, tzinfo=timezone.utc)
