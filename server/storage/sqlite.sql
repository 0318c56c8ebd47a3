-- Every SQL statement of the SQLite backend. Times are Unix epoch seconds (REAL).
-- Parameters use sqlite3's :name style; list parameters arrive as JSON text.

-- name: migration_1
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout REAL,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    lease_id TEXT,
    lease_expires_at REAL,
    deadline REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    idempotency_key TEXT,
    request_hash TEXT
);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The lease query walks this index in order: its cost does not grow with history.
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE status = 'queued';
CREATE INDEX jobs_queued_run_at ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_type_id ON jobs (type, id);

-- name: migration_2
CREATE TABLE job_attempts (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    lease_id TEXT,
    started_at REAL,
    finished_at REAL NOT NULL,
    outcome TEXT NOT NULL,
    error TEXT
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- name: migration_3
-- Jobs not due yet get their own status, off the lease path: the ready index
-- holds only jobs that can run now, and the housekeeper promotes the others.
-- Lease ids become random per attempt, and a lease request's id gets its own column.
ALTER TABLE jobs ADD COLUMN lease_request TEXT;
UPDATE jobs SET status = 'scheduled'
WHERE status = 'queued' AND run_at > (julianday('now') - 2440587.5) * 86400.0;
DROP INDEX jobs_queued_run_at;
CREATE INDEX jobs_scheduled_run_at ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_lease_request ON jobs (lease_request) WHERE lease_request IS NOT NULL;
-- name: migration_4
-- Observability: each attempt's log, and the workers seen (see server/registry.py).
ALTER TABLE job_attempts ADD COLUMN log TEXT;
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT,
    types TEXT,
    slots INTEGER,
    last_seen REAL NOT NULL
);
CREATE INDEX workers_last_seen ON workers (last_seen);


-- name: migration_5
-- The webhook plugin's target (POST /jobs notify_url).
ALTER TABLE jobs ADD COLUMN notify_url TEXT;

-- name: migration_6
-- A retry grants the job as many attempts as it was submitted with, and
-- attempts are numbered for the life of the job: max_attempts becomes
-- attempts + attempt_grant on retry (attempt_grant, NULL until the first retry,
-- keeps the submitted max_attempts).
ALTER TABLE jobs ADD COLUMN attempt_grant INTEGER;

-- name: migration_7
-- Queues, dependencies and concurrency limits (issue 13). A job's queue has its
-- own ready index so that a worker serving some queues walks only theirs.
-- has_dependants lets a completion skip the dependency lookup for every other job.
ALTER TABLE jobs ADD COLUMN queue TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN depends_on TEXT;
ALTER TABLE jobs ADD COLUMN deps_pending INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN on_dependency_failure TEXT;
ALTER TABLE jobs ADD COLUMN has_dependants INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_ready_queue ON jobs (queue, priority DESC, id) WHERE status = 'queued';
CREATE TABLE job_dependencies (
    depends_on INTEGER NOT NULL,
    job_id INTEGER NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);
CREATE TABLE queues (name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0);
CREATE TABLE concurrency_limits (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    max_running INTEGER NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    job TEXT NOT NULL,
    misfire TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    next_fire_at REAL NOT NULL,
    last_fire_at REAL,
    created_at REAL NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at);

-- name: migration_8
-- Job ids are never reused (issue 18): without AUTOINCREMENT SQLite gave the
-- ids of pruned jobs again, and a new job inherited the dependency rows of an
-- old one. The table is rebuilt with AUTOINCREMENT (rows and indexes as they
-- were), and the id sequence starts past every id seen so far, those only the
-- dependency and attempt tables still name included.
-- Dependency rows become edges still to resolve: resolution deletes each one
-- as it counts it, so a waiting job's deps_pending is the number of its edges.
-- Edges already resolved (their dependency finished) or left behind by
-- pruning are dropped. dependency_cascades marks finished jobs whose
-- dependants are still being resolved, a chunk per transaction (the housekeeper).
CREATE TABLE jobs_v8 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    priority INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    timeout REAL,
    run_at REAL NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    worker_id TEXT,
    lease_id TEXT,
    lease_expires_at REAL,
    deadline REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    result TEXT,
    error TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    lease_request TEXT,
    notify_url TEXT,
    attempt_grant INTEGER,
    queue TEXT NOT NULL DEFAULT 'default',
    depends_on TEXT,
    deps_pending INTEGER NOT NULL DEFAULT 0,
    on_dependency_failure TEXT,
    has_dependants INTEGER NOT NULL DEFAULT 0
);
INSERT INTO jobs_v8 (id, type, payload, priority, status, attempts, max_attempts, timeout,
                     run_at, created_at, started_at, finished_at, worker_id, lease_id,
                     lease_expires_at, deadline, cancel_requested, result, error,
                     idempotency_key, request_hash, lease_request, notify_url, attempt_grant,
                     queue, depends_on, deps_pending, on_dependency_failure, has_dependants)
SELECT id, type, payload, priority, status, attempts, max_attempts, timeout,
       run_at, created_at, started_at, finished_at, worker_id, lease_id,
       lease_expires_at, deadline, cancel_requested, result, error,
       idempotency_key, request_hash, lease_request, notify_url, attempt_grant,
       queue, depends_on, deps_pending, on_dependency_failure, has_dependants
FROM jobs ORDER BY id;
DROP TABLE jobs;
ALTER TABLE jobs_v8 RENAME TO jobs;
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE status = 'queued';
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_type_id ON jobs (type, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX jobs_scheduled_run_at ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_lease_request ON jobs (lease_request) WHERE lease_request IS NOT NULL;
CREATE INDEX jobs_ready_queue ON jobs (queue, priority DESC, id) WHERE status = 'queued';
DELETE FROM sqlite_sequence WHERE name IN ('jobs', 'jobs_v8');
INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobs', coalesce(max(seen), 0) FROM (
    SELECT max(id) AS seen FROM jobs
    UNION ALL SELECT max(depends_on) FROM job_dependencies
    UNION ALL SELECT max(job_id) FROM job_dependencies
    UNION ALL SELECT max(job_id) FROM job_attempts
);
DELETE FROM job_dependencies
WHERE NOT EXISTS (
    SELECT 1 FROM jobs AS dependency
    WHERE dependency.id = job_dependencies.depends_on
      AND dependency.status NOT IN ('succeeded', 'failed', 'cancelled')
) OR NOT EXISTS (
    SELECT 1 FROM jobs AS dependant, json_each(dependant.depends_on) AS listed
    WHERE dependant.id = job_dependencies.job_id AND listed.value = job_dependencies.depends_on
);
CREATE INDEX job_dependencies_job ON job_dependencies (job_id);
UPDATE jobs SET deps_pending = (
    SELECT count(*) FROM job_dependencies WHERE job_dependencies.job_id = jobs.id
) WHERE status = 'waiting';
CREATE TABLE dependency_cascades (job_id INTEGER PRIMARY KEY);

-- name: migration_9
-- Observability without scanning jobs (issue 18): job_counts holds the number
-- of jobs by type, queue, status and priority, kept in the very transaction of
-- each change (SQLite has one writer at a time: no contention).
-- jobs_queued_age gives the oldest ready job of each type and priority.
CREATE TABLE job_counts (
    type TEXT NOT NULL,
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (type, queue, status, priority)
) WITHOUT ROWID;
INSERT INTO job_counts (type, queue, status, priority, count)
SELECT type, queue, status, priority, count(*) FROM jobs GROUP BY type, queue, status, priority;
-- A trigger per row costs ~30 % more SQLite work per job: the hot path counts in
-- batches instead. Inserts are counted by their callers (count_adds), as are the
-- two moves of every job's hot path, queued to running (the lease) and running to
-- succeeded (the completion), one count_moves per batch (server/counts.py).
-- The triggers count every other change, whatever statement makes it.
-- No statement changes a job's type, queue or priority (tests/unit/test_counts.py).
CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs
WHEN OLD.status IS NOT NEW.status
  AND NOT (OLD.status = 'queued' AND NEW.status = 'running')
  AND NOT (OLD.status = 'running' AND NEW.status = 'succeeded')
BEGIN
    INSERT INTO job_counts (type, queue, status, priority, count)
    VALUES (OLD.type, OLD.queue, OLD.status, OLD.priority, -1),
           (NEW.type, NEW.queue, NEW.status, NEW.priority, 1)
    ON CONFLICT (type, queue, status, priority) DO UPDATE SET count = count + excluded.count;
END;
-- Upserts, not UPDATE ... - 1: a job inserted in this transaction is counted at
-- its end (count_adds), so its row may not exist yet when it moves on.
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
BEGIN
    INSERT INTO job_counts (type, queue, status, priority, count)
    VALUES (OLD.type, OLD.queue, OLD.status, OLD.priority, -1)
    ON CONFLICT (type, queue, status, priority) DO UPDATE SET count = count - 1;
END;
CREATE INDEX jobs_queued_age ON jobs (type, priority, run_at) WHERE status = 'queued';

-- name: migration_10
-- The webhook outbox (issue 18, server/outbox.py): one row per finished job with a
-- notify_url, written by a trigger in the transaction that finished the job, whatever
-- statement finished it, so that a crash after that commit loses no delivery.
-- next_attempt_at: when the row is due, or, while a server holds it (claim set), when
-- that claim lapses. origin and body are filled in when the row is first claimed.
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY,
    job_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    status TEXT NOT NULL,
    finished_at REAL,
    delivery_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    claim TEXT,
    origin TEXT,
    body TEXT,
    last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
CREATE TRIGGER webhook_outbox_on_finish AFTER UPDATE OF status ON jobs
WHEN NEW.notify_url IS NOT NULL
    AND NEW.status IN ('succeeded', 'failed', 'cancelled')
    AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')
BEGIN
    INSERT INTO webhook_outbox (job_id, url, status, finished_at, delivery_id, created_at,
                                next_attempt_at)
    VALUES (NEW.id, NEW.notify_url, NEW.status, NEW.finished_at, lower(hex(randomblob(16))),
            coalesce(NEW.finished_at, (julianday('now') - 2440587.5) * 86400.0),
            coalesce(NEW.finished_at, (julianday('now') - 2440587.5) * 86400.0));
END;

-- name: migration_11
-- Tasks (issue 20): a failed attempt's traceback, and a running job's progress
-- (JSON: fraction, message, the attempt that reported it, when).
ALTER TABLE job_attempts ADD COLUMN traceback TEXT;
ALTER TABLE jobs ADD COLUMN progress TEXT;

-- name: migration_12
-- Operations (issue 23). Listings sorted by priority with keyset paging, and
-- filtered by queue, each on an index (jobs_finished serves finish time, the
-- primary key submission and creation order).
-- The oldest ready job is found per type, queue and priority (the per-minute rollup
-- draws queues too): one step into jobs_queued_age for each group of job_counts.
-- job_dependants keeps every dependency of a job for good (job_dependencies only
-- holds the edges still to resolve), so a job's page can list its dependants.
-- live_log: what the running attempt logged so far, sent with its heartbeats.
-- job_rollup: per minute, jobs succeeded and failed (from each server's counters,
-- added up) and the queue depth and oldest ready job (a snapshot), by type and queue.
CREATE INDEX jobs_priority_id ON jobs (priority, id);
CREATE INDEX jobs_queue_id ON jobs (queue, id);
DROP INDEX jobs_queued_age;
CREATE INDEX jobs_queued_age ON jobs (type, queue, priority, run_at) WHERE status = 'queued';
CREATE TABLE job_dependants (
    depends_on INTEGER NOT NULL,
    job_id INTEGER NOT NULL,
    PRIMARY KEY (depends_on, job_id)
) WITHOUT ROWID;
CREATE INDEX job_dependants_job ON job_dependants (job_id);
INSERT OR IGNORE INTO job_dependants (depends_on, job_id)
SELECT listed.value, jobs.id FROM jobs, json_each(jobs.depends_on) AS listed
WHERE jobs.depends_on IS NOT NULL;
ALTER TABLE jobs ADD COLUMN live_log TEXT;
CREATE TABLE job_rollup (
    minute INTEGER NOT NULL,
    type TEXT NOT NULL,
    queue TEXT NOT NULL,
    succeeded INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    depth INTEGER,
    oldest_run_at REAL,
    PRIMARY KEY (minute, type, queue)
) WITHOUT ROWID;

-- name: create_version_table
CREATE TABLE IF NOT EXISTS taskframe_schema (version INTEGER NOT NULL);

-- name: version_table_exists
SELECT count(*) AS present FROM sqlite_master WHERE name = 'taskframe_schema';

-- name: get_version
SELECT max(version) AS version FROM taskframe_schema;

-- name: set_version
INSERT INTO taskframe_schema (version) VALUES (:version);

-- name: ping
SELECT 1 AS ok;

-- name: insert_job
INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts, timeout,
                  run_at, created_at, idempotency_key, request_hash, notify_url, queue,
                  depends_on, on_dependency_failure)
VALUES (:type, :payload, :priority,
        CASE WHEN :run_at > :created_at THEN 'scheduled' ELSE 'queued' END,
        0, :max_attempts, :timeout, :run_at, :created_at, :idempotency_key, :request_hash,
        :notify_url, :queue, :depends_on, :on_dependency_failure)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_job_without_key
-- One job of insert_jobs: json_each costs more than the insert of a single row, and
-- RETURNING as much again; its id is the connection's last insert rowid.
INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts, timeout,
                  run_at, created_at, notify_url, queue, on_dependency_failure)
VALUES (:type, :payload, :priority,
        CASE WHEN :run_at > :created_at THEN 'scheduled' ELSE 'queued' END,
        0, :max_attempts, :timeout, :run_at, :created_at, :notify_url, :queue,
        :on_dependency_failure);

-- name: insert_jobs_without_keys
-- Bulk submission in one statement: :rows is a JSON array with one array per job,
-- its fields in the order of base.NEW_JOB_FIELDS. Ids are drawn in that order.
INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts, timeout,
                  run_at, created_at, notify_url, queue, on_dependency_failure)
SELECT value ->> 0, value ->> 1, value ->> 2,
       CASE WHEN (value ->> 5) > (value ->> 6) THEN 'scheduled' ELSE 'queued' END,
       0, value ->> 3, value ->> 4, value ->> 5, value ->> 6, value ->> 7, value ->> 8,
       value ->> 9
FROM json_each(:rows) ORDER BY key
RETURNING id;

-- name: get_job
SELECT * FROM jobs WHERE id = :id;

-- name: get_job_for_update
SELECT * FROM jobs WHERE id = :id;

-- name: get_job_by_key
SELECT * FROM jobs WHERE idempotency_key = :idempotency_key;

-- name: get_jobs
SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- Listings are summaries: no payload, no result (their sizes instead).
-- name: list_jobs
-- A page. Filters (list_jobs_where_*, each ending in AND) are put in at the mark
-- (see Transaction.filtered), the last one the order: list_jobs_where_<key>_<order>,
-- the keyset condition after the previous page's last (key, id) and the order.
-- Each order has its index: the primary key (submission, also creation order),
-- jobs_priority_id and jobs_finished (finished jobs only); jobs_status_id, jobs_type_id and
-- jobs_queue_id serve a filter in id order.
SELECT id, type, priority, status, attempts, max_attempts, timeout, run_at, created_at,
       started_at, finished_at, worker_id, error, idempotency_key, cancel_requested, notify_url,
       queue, depends_on, on_dependency_failure,
       length(payload) AS payload_bytes, length(result) AS result_bytes
FROM jobs WHERE /* filters */
LIMIT :limit;

-- name: list_jobs_where_status
status = :status AND

-- name: list_jobs_where_type
type = :type AND

-- name: list_jobs_where_queue
queue = :queue AND

-- name: list_jobs_where_key
idempotency_key = :key AND

-- name: list_jobs_where_created_after
created_at >= :created_after AND

-- name: list_jobs_where_created_before
created_at < :created_before AND

-- name: list_jobs_where_finished_after
finished_at >= :finished_after AND

-- name: list_jobs_where_finished_before
finished_at < :finished_before AND

-- name: list_jobs_where_id_desc
id < :after_id ORDER BY id DESC

-- name: list_jobs_where_id_asc
id > :after_id ORDER BY id

-- name: list_jobs_where_priority_desc
(priority, id) < (:after_key, :after_id) ORDER BY priority DESC, id DESC

-- name: list_jobs_where_priority_asc
(priority, id) > (:after_key, :after_id) ORDER BY priority, id

-- name: list_jobs_where_finished_desc
-- likely(): without it the planner takes jobs_status_id and sorts every finished job.
likely(status IN ('succeeded', 'failed', 'cancelled'))
AND (finished_at, id) < (:after_key, :after_id)
ORDER BY finished_at DESC, id DESC

-- name: list_jobs_where_finished_asc
likely(status IN ('succeeded', 'failed', 'cancelled'))
AND (finished_at, id) > (:after_key, :after_id)
ORDER BY finished_at, id

-- name: list_jobs_where_dependant_of
-- The jobs that name :dependency_of in their depends_on (job_dependants keeps them all).
id IN (SELECT job_id FROM job_dependants WHERE depends_on = :dependency_of) AND

-- name: insert_dependants
-- One batch's edges, kept for good (WHERE true: an upsert after a SELECT needs one).
INSERT INTO job_dependants (depends_on, job_id)
SELECT value ->> 'depends_on', value ->> 'job_id' FROM json_each(:rows) WHERE true
ON CONFLICT DO NOTHING;

-- name: delete_dependant_links
-- A pruned job's links, both ways (the other job's depends_on still names it).
DELETE FROM job_dependants
WHERE depends_on IN (SELECT value FROM json_each(:ids))
   OR job_id IN (SELECT value FROM json_each(:ids));

-- ------------------------------------------------------------ bulk actions (issue 23)

-- ------------------------------------------------- live log and rollup (issue 23)

-- name: append_live_log
-- Fenced like a heartbeat; the last 64 KiB of the running attempt's log are kept.
UPDATE jobs SET live_log = substr(coalesce(live_log || :log, :log), -65536)
WHERE id = :id AND lease_id = :lease_id AND worker_id = :worker_id AND status = 'running';

-- name: get_live_log
SELECT attempts, worker_id, started_at, live_log FROM jobs WHERE id = :id AND status = 'running';

-- name: lock_rollup
-- Writers are serialised already: nothing to lock beyond BEGIN IMMEDIATE.
SELECT 0 AS locked WHERE 0;

-- name: rollup_add
-- Each server adds the jobs it saw finish in the minute: they add up across servers.
INSERT INTO job_rollup (minute, type, queue, succeeded, failed)
VALUES (:minute, :type, :queue, :succeeded, :failed)
ON CONFLICT (minute, type, queue) DO UPDATE
SET succeeded = succeeded + excluded.succeeded, failed = failed + excluded.failed;

-- name: rollup_snapshot
-- The queue as it was at the minute's end: whichever server writes last, the same.
INSERT INTO job_rollup (minute, type, queue, depth, oldest_run_at)
VALUES (:minute, :type, :queue, :depth, :oldest_run_at)
ON CONFLICT (minute, type, queue) DO UPDATE
SET depth = excluded.depth, oldest_run_at = excluded.oldest_run_at;

-- name: rollup_clear_snapshot
-- Before a snapshot: a type or queue emptied since the last one shows no depth.
UPDATE job_rollup SET depth = NULL, oldest_run_at = NULL
WHERE minute = :minute AND depth IS NOT NULL;

-- name: rollup_read
-- The window's minutes, all types and queues added up, or those of the filters
-- (rollup_read_where_*): a row per minute whatever the number of types.
SELECT minute, sum(succeeded) AS succeeded, sum(failed) AS failed, sum(depth) AS depth,
       min(oldest_run_at) AS oldest_run_at
FROM job_rollup WHERE /* filters */ minute >= :since
GROUP BY minute ORDER BY minute;

-- name: rollup_read_where_type
type = :type AND

-- name: rollup_read_where_queue
queue = :queue AND

-- name: rollup_names
-- The types and queues the window has rows for (the charts' choices).
SELECT DISTINCT type, queue FROM job_rollup WHERE minute >= :since;

-- name: rollup_prune
DELETE FROM job_rollup WHERE minute < :before;

-- name: get_jobs_for_update
-- One batch's rows, in id order (SQLite's write lock covers them all anyway).
SELECT * FROM jobs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: lease_jobs
-- Writers are serialised by BEGIN IMMEDIATE, so select-then-update is atomic.
-- Every queued job is due (not yet due ones are 'scheduled'): no run_at test.
-- Each job gets its own random lease id, the n-th of :lease_ids in lease order.
UPDATE jobs
SET status = 'running', attempts = attempts + 1, worker_id = :worker_id,
    lease_id = json_extract(:lease_ids, '$[' || (picked.n - 1) || ']'),
    lease_request = :lease_request, lease_expires_at = :lease_expires_at,
    started_at = :now, finished_at = NULL,
    deadline = CASE WHEN timeout IS NULL THEN NULL ELSE :now + timeout END
FROM (
    SELECT id, row_number() OVER (ORDER BY priority DESC, id) AS n FROM (
        -- Without the hint the planner may pick jobs_status_id and sort every queued job.
        SELECT id, priority FROM jobs INDEXED BY jobs_ready
        WHERE status = 'queued' AND type IN (SELECT value FROM json_each(:types))
        ORDER BY priority DESC, id
        LIMIT :limit
    )
) AS picked
WHERE jobs.id = picked.id
RETURNING *;

-- name: any_queued
-- Whether a lease could find anything, read without the write lock: a queued job of
-- these types (in these queues; NULL: any). A long-poll looks so before it writes.
SELECT EXISTS (
    SELECT 1 FROM jobs INDEXED BY jobs_queued_age
    WHERE status = 'queued' AND type IN (SELECT value FROM json_each(:types))
      AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
) AS found;

-- name: leased_by_request
SELECT * FROM jobs INDEXED BY jobs_lease_request
WHERE lease_request = :lease_request AND status = 'running' AND worker_id = :worker_id;

-- name: next_run_at
SELECT min(run_at) AS run_at FROM jobs INDEXED BY jobs_scheduled_run_at
WHERE status = 'scheduled';

-- name: promote_due
-- The housekeeper: scheduled jobs whose time came join the queue, a batch at a time.
UPDATE jobs SET status = 'queued'
WHERE id IN (
    SELECT id FROM jobs INDEXED BY jobs_scheduled_run_at
    WHERE status = 'scheduled' AND run_at <= :now
    ORDER BY run_at
    LIMIT :limit
)
RETURNING id, type, queue;

-- name: end_attempts
-- Every end of attempts of a batch in one statement (reports, reaps, releases):
-- each row is fenced by its own lease, worker and status, so a stale or re-sent one
-- changes nothing and is not returned. Each row of :rows gives the job's next status
-- (next_status decided it), run_at, finished_at, error and result.
-- NOT INDEXED: each row is found by its id (else the planner walks every running job).
UPDATE jobs NOT INDEXED
SET status = ended.status, result = ended.result, error = ended.error,
    finished_at = ended.finished_at, run_at = ended.run_at, lease_id = ended.new_lease_id,
    lease_expires_at = NULL, deadline = NULL, attempts = attempts - ended.refund,
    cancel_requested = 0, live_log = NULL
FROM (
    SELECT value ->> 'id' AS id, value ->> 'lease_id' AS lease_id,
           value ->> 'worker_id' AS worker_id, value ->> 'status' AS status,
           value ->> 'result' AS result, value ->> 'error' AS error,
           value ->> 'finished_at' AS finished_at, value ->> 'run_at' AS run_at,
           value ->> 'new_lease_id' AS new_lease_id, value ->> 'refund' AS refund
    FROM json_each(:rows)
) AS ended
WHERE jobs.id = ended.id AND jobs.lease_id = ended.lease_id
  AND jobs.worker_id = ended.worker_id AND jobs.status = 'running'
RETURNING *;

-- name: insert_attempts
-- The history rows of a batch in one statement, in the order given.
INSERT INTO job_attempts (job_id, attempt, worker_id, lease_id, started_at, finished_at,
                          outcome, error, log, traceback)
SELECT value ->> 'job_id', value ->> 'attempt', value ->> 'worker_id', value ->> 'lease_id',
       value ->> 'started_at', value ->> 'finished_at', value ->> 'outcome',
       value ->> 'error', value ->> 'log', value ->> 'traceback'
FROM json_each(:rows) ORDER BY key;

-- name: list_attempts
SELECT * FROM job_attempts WHERE job_id = :job_id ORDER BY id;

-- name: extend_lease
UPDATE jobs SET lease_expires_at = :lease_expires_at
WHERE id = :id AND lease_id = :lease_id AND worker_id = :worker_id AND status = 'running'
RETURNING id, cancel_requested;

-- name: set_progress
-- Fenced like a heartbeat; the attempt is the row's, so an old attempt's progress is known.
UPDATE jobs SET progress = json_set(:progress, '$.attempt', attempts)
WHERE id = :id AND lease_id = :lease_id AND worker_id = :worker_id AND status = 'running';

-- name: expired_attempts
SELECT * FROM jobs
WHERE status = 'running' AND (lease_expires_at < :lease_cutoff OR deadline < :now)
LIMIT :limit;

-- name: cancel_queued
-- Jobs not started yet (queued, scheduled or waiting) are cancelled at once.
UPDATE jobs SET status = 'cancelled', finished_at = :now
WHERE id = :id AND status IN ('queued', 'scheduled', 'waiting')
RETURNING *;

-- name: request_cancel
UPDATE jobs SET cancel_requested = 1 WHERE id = :id AND status = 'running' RETURNING *;

-- name: retry_job
UPDATE jobs
SET status = 'queued', run_at = :now, started_at = NULL, finished_at = NULL,
    attempt_grant = COALESCE(attempt_grant, max_attempts),
    max_attempts = attempts + COALESCE(attempt_grant, max_attempts),
    result = NULL, error = NULL, worker_id = NULL, lease_id = NULL, cancel_requested = 0
WHERE id = :id AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: unresolved_dependencies
-- A cancelled dependant keeps the edges of the dependencies that had not finished.
SELECT count(*) AS pending FROM job_dependencies WHERE job_id = :id;

-- name: prunable_jobs
-- Not a job whose dependants are still being resolved (dependency_cascades).
SELECT id FROM jobs
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < :before
  AND id NOT IN (SELECT job_id FROM dependency_cascades)
LIMIT :limit;

-- name: delete_dependencies
-- Edges where a pruned job is the dependency (none unless a cascade was cut short)...
DELETE FROM job_dependencies WHERE depends_on IN (SELECT value FROM json_each(:ids));

-- name: delete_dependants
-- ... and where it is the dependant (cancelled while its dependencies still ran).
DELETE FROM job_dependencies WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: delete_attempts
DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: delete_jobs
DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: job_counts
-- Jobs by type, queue, status and priority (a small table: no scan of jobs).
SELECT type, queue, status, priority, count FROM job_counts WHERE count <> 0;

-- name: count_adds
-- Jobs inserted (no trigger counts inserts), one statement per group of jobs.
INSERT INTO job_counts (type, queue, status, priority, count)
VALUES (:type, :queue, :status, :priority, :n)
ON CONFLICT (type, queue, status, priority) DO UPDATE SET count = count + excluded.count;

-- name: count_moves
-- The hot path's moves (the triggers skip them), one statement per group of jobs.
INSERT INTO job_counts (type, queue, status, priority, count)
VALUES (:type, :queue, :source, :priority, -:n), (:type, :queue, :target, :priority, :n)
ON CONFLICT (type, queue, status, priority) DO UPDATE SET count = count + excluded.count;

-- name: counts_by_type
SELECT type AS name, status, sum(count) AS count FROM job_counts
GROUP BY type, status HAVING sum(count) <> 0;

-- name: counts_by_queue
SELECT queue AS name, status, sum(count) AS count FROM job_counts
GROUP BY queue, status HAVING sum(count) <> 0;

-- name: fold_job_counts
-- Triggers keep job_counts exact as it is: nothing to fold (PostgreSQL has deltas).
SELECT 0 AS folded WHERE 0;

-- name: drop_empty_counts
DELETE FROM job_counts WHERE count = 0;

-- name: count_by_status
SELECT status, count(*) AS count FROM jobs GROUP BY status;

-- name: count_by_type_and_status
SELECT type, status, count(*) AS count FROM jobs GROUP BY type, status;

-- name: ready_by_type_and_priority
-- Queue depth and the oldest ready job, read at scrape time so that servers agree:
-- the depth from job_counts, the oldest one step into jobs_queued_age per group
-- (type, queue and priority: callers add queues up where they show none).
SELECT ready.type, ready.queue, ready.priority, ready.count, (
    SELECT min(run_at) FROM jobs INDEXED BY jobs_queued_age
    WHERE status = 'queued' AND type = ready.type AND queue = ready.queue
      AND priority = ready.priority AND run_at <= :now
) AS oldest_run_at
FROM (
    SELECT type, queue, priority, sum(count) AS count FROM job_counts
    WHERE status = 'queued' GROUP BY type, queue, priority HAVING sum(count) > 0
) AS ready;

-- name: upsert_worker
-- A heartbeat knows only the id: the other fields keep what the last lease said.
INSERT INTO workers (id, host, types, slots, last_seen)
VALUES (:id, :host, :types, :slots, :now)
ON CONFLICT (id) DO UPDATE
SET host = coalesce(excluded.host, workers.host),
    types = coalesce(excluded.types, workers.types),
    slots = coalesce(excluded.slots, workers.slots),
    last_seen = excluded.last_seen;

-- name: list_workers
-- The most recently seen first, at most :limit of them (a bound on /workers and /health);
-- their running jobs counted once for all of them (not once per worker).
SELECT w.id, w.host, w.types, w.slots, w.last_seen, coalesce(r.running, 0) AS running
FROM (SELECT * FROM workers WHERE last_seen >= :since ORDER BY last_seen DESC LIMIT :limit) w
LEFT JOIN (
    SELECT worker_id, count(*) AS running FROM jobs INDEXED BY jobs_status_id
    WHERE status = 'running' GROUP BY worker_id
) AS r ON r.worker_id = w.id
ORDER BY w.id;

-- name: prune_workers
DELETE FROM workers WHERE last_seen < :before;

-- ------------------------------------------------------------ routing (issue 13)

-- name: lease_controls
-- Read by every lease: both tables are tiny (and usually empty, then the
-- plain lease_jobs runs, exactly as before queues and limits existed).
SELECT 'paused' AS kind, name, 0 AS max_running FROM queues WHERE paused = 1
UNION ALL
SELECT kind, name, max_running FROM concurrency_limits;

-- name: lock_limits
-- Writers are serialised already: nothing to lock beyond BEGIN IMMEDIATE.
SELECT kind, name FROM concurrency_limits WHERE 0;

-- name: count_running_by_type
SELECT count(*) AS count FROM jobs INDEXED BY jobs_status_id
WHERE status = 'running' AND type = :name;

-- name: count_running_by_queue
SELECT count(*) AS count FROM jobs INDEXED BY jobs_status_id
WHERE status = 'running' AND queue = :name;

-- name: lease_candidates
-- The routed lease, every queue: the ready index in order, skipping what is
-- paused or at its limit (excluded) and what this transaction picked already.
SELECT id, priority, type, queue FROM jobs INDEXED BY jobs_ready
WHERE status = 'queued' AND type IN (SELECT value FROM json_each(:types))
  AND queue NOT IN (SELECT value FROM json_each(:excluded_queues))
  AND type NOT IN (SELECT value FROM json_each(:excluded_types))
  AND id NOT IN (SELECT value FROM json_each(:picked))
ORDER BY priority DESC, id
LIMIT :limit;

-- name: lease_candidates_in_queues
-- The routed lease, named queues: each queue's slice of jobs_ready_queue.
SELECT id, priority, type, queue FROM jobs INDEXED BY jobs_ready_queue
WHERE status = 'queued' AND queue IN (SELECT value FROM json_each(:queues))
  AND type IN (SELECT value FROM json_each(:types))
  AND queue NOT IN (SELECT value FROM json_each(:excluded_queues))
  AND type NOT IN (SELECT value FROM json_each(:excluded_types))
  AND id NOT IN (SELECT value FROM json_each(:picked))
ORDER BY priority DESC, id
LIMIT :limit;

-- name: lease_picked
-- The n-th picked id gets the n-th random lease id.
UPDATE jobs
SET status = 'running', attempts = attempts + 1, worker_id = :worker_id,
    lease_id = json_extract(:lease_ids, '$[' || picked.n || ']'),
    lease_request = :lease_request, lease_expires_at = :lease_expires_at,
    started_at = :now, finished_at = NULL,
    deadline = CASE WHEN timeout IS NULL THEN NULL ELSE :now + timeout END
FROM (SELECT value AS id, key AS n FROM json_each(:ids)) AS picked
WHERE jobs.id = picked.id AND jobs.status = 'queued'
RETURNING *;

-- name: queue_counts
SELECT queue, status, count(*) AS count FROM jobs GROUP BY queue, status;

-- name: list_queue_states
SELECT name, paused FROM queues ORDER BY name;

-- name: set_queue_paused
INSERT INTO queues (name, paused) VALUES (:name, :paused)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused;

-- name: list_limits
SELECT kind, name, max_running FROM concurrency_limits ORDER BY kind, name;

-- name: set_limit
INSERT INTO concurrency_limits (kind, name, max_running) VALUES (:kind, :name, :max_running)
ON CONFLICT (kind, name) DO UPDATE SET max_running = excluded.max_running;

-- name: delete_limit
DELETE FROM concurrency_limits WHERE kind = :kind AND name = :name;

-- ------------------------------------------------------- dependencies (issue 13)

-- name: lock_dependencies
SELECT id, status FROM jobs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id;

-- name: mark_dependencies
UPDATE jobs SET has_dependants = 1
WHERE id IN (SELECT value FROM json_each(:ids)) AND has_dependants = 0;

-- name: insert_dependencies
-- One batch's pending edges.
INSERT INTO job_dependencies (depends_on, job_id)
SELECT value ->> 'depends_on', value ->> 'job_id' FROM json_each(:rows) WHERE true
ON CONFLICT DO NOTHING;

-- name: start_waiting
UPDATE jobs SET status = 'waiting', deps_pending = :pending WHERE id = :id RETURNING *;

-- name: take_dependants
-- A chunk of a finished job's dependants, in id order. Each edge is deleted as
-- it is counted: a job that finishes again (retried) resolves nothing twice.
-- A key range (up to the chunk's last id), not IN (...): an index range scan.
DELETE FROM job_dependencies
WHERE depends_on = :id AND job_id <= (
    SELECT max(job_id) FROM (
        SELECT job_id FROM job_dependencies WHERE depends_on = :id
        ORDER BY job_id LIMIT :limit
    ) AS chunk
)
RETURNING job_id;

-- name: lock_dependants
-- Writers are serialised already: nothing to lock beyond BEGIN IMMEDIATE.
SELECT id FROM jobs WHERE 0;

-- name: resolve_dependants
-- One dependency fewer for each waiting job of the chunk, set-based. A failed
-- dependency cancels the dependants that do not run anyway; the last one
-- makes a dependant ready (queued, or scheduled when its run_at is later).
UPDATE jobs
SET deps_pending = deps_pending - 1,
    status = CASE
        WHEN :failed AND on_dependency_failure IS NOT 'run' THEN 'cancelled'
        WHEN deps_pending > 1 THEN 'waiting'
        WHEN run_at <= :now THEN 'queued'
        ELSE 'scheduled'
    END,
    finished_at = CASE
        WHEN :failed AND on_dependency_failure IS NOT 'run' THEN :now ELSE finished_at
    END,
    error = CASE WHEN :failed AND on_dependency_failure IS NOT 'run' THEN :error ELSE error END
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'waiting'
RETURNING *;

-- name: start_cascade
-- The rest of this job's dependants is left to the housekeeper (durably).
INSERT INTO dependency_cascades (job_id) VALUES (:id) ON CONFLICT DO NOTHING;

-- name: next_cascades
SELECT job_id FROM dependency_cascades ORDER BY job_id LIMIT :limit;

-- name: end_cascade
DELETE FROM dependency_cascades WHERE job_id = :id;

-- name: cascade_pending
SELECT job_id FROM dependency_cascades WHERE job_id = :id;

-- name: attach_dependencies
-- The starting status of a batch's jobs just inserted with dependencies (next_status
-- decided each: unchanged, waiting, or cancelled because a dependency failed).
UPDATE jobs
SET status = a.status, depends_on = a.depends_on, deps_pending = a.deps_pending,
    finished_at = a.finished_at, error = a.error
FROM (
    SELECT value ->> 'id' AS id, value ->> 'status' AS status,
           value ->> 'depends_on' AS depends_on, value ->> 'deps_pending' AS deps_pending,
           value ->> 'finished_at' AS finished_at, value ->> 'error' AS error
    FROM json_each(:rows)
) AS a
WHERE jobs.id = a.id
RETURNING *;

-- name: dependency_results
SELECT id, status, result FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: existing_ids
SELECT id FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- ---------------------------------------------------------- schedules (issue 13)

-- name: lock_schedules
-- Writers are serialised already: counting and inserting is atomic.
SELECT 0 AS locked WHERE 0;

-- name: count_schedules
SELECT count(*) AS count FROM schedules;

-- name: insert_schedule
INSERT INTO schedules (name, cron, timezone, job, misfire, paused, next_fire_at, created_at)
VALUES (:name, :cron, :timezone, :job, :misfire, :paused,
        :next_fire_at, :created_at)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE name = :name;

-- name: list_schedules
SELECT * FROM schedules ORDER BY name;

-- name: delete_schedule
DELETE FROM schedules WHERE name = :name;

-- name: set_schedule_paused
UPDATE schedules SET paused = :paused, next_fire_at = :next_fire_at
WHERE name = :name
RETURNING *;

-- name: next_schedule_fire
SELECT min(next_fire_at) AS next_fire_at FROM schedules WHERE paused = 0;

-- name: due_schedules
-- Servers firing at once take disjoint schedules; the jobs' idempotency keys
-- (schedule:<name>:<fire time>) make one job per time in any case.
SELECT * FROM schedules
WHERE next_fire_at <= :now AND paused = 0
ORDER BY name
LIMIT :limit;

-- name: advance_schedule
UPDATE schedules SET next_fire_at = :next_fire_at, last_fire_at = :last_fire_at
WHERE name = :name AND next_fire_at = :previous;

-- ------------------------------------------------------ webhook outbox (issue 18)

-- name: outbox_next_due
-- When the next delivery this server may start is due (a claimed row: when its claim
-- lapses). Rows of receivers at their limit here (:busy) wait for a sender to finish.
SELECT next_attempt_at FROM webhook_outbox INDEXED BY webhook_outbox_due
WHERE origin IS NULL OR origin NOT IN (SELECT value FROM json_each(:busy))
ORDER BY next_attempt_at
LIMIT 1;

-- name: outbox_claim
-- Writers are serialised by BEGIN IMMEDIATE, so select-then-update is atomic: servers
-- sharing the database claim disjoint rows. A claim lasts until :claimed_until.
UPDATE webhook_outbox SET claim = :claim, next_attempt_at = :claimed_until
WHERE id IN (
    SELECT id FROM webhook_outbox INDEXED BY webhook_outbox_due
    WHERE next_attempt_at <= :now
      AND (origin IS NULL OR origin NOT IN (SELECT value FROM json_each(:busy)))
    ORDER BY next_attempt_at
    LIMIT :limit
)
RETURNING *;

-- name: outbox_fill
UPDATE webhook_outbox SET origin = :origin, body = :body WHERE id = :id AND claim = :claim;

-- name: outbox_reschedule
-- A failed attempt (or a claim given back unsent): due again at :next_attempt_at.
UPDATE webhook_outbox
SET claim = NULL, attempts = :attempts, next_attempt_at = :next_attempt_at,
    last_error = :error
WHERE id = :id AND claim = :claim;

-- name: outbox_delete
DELETE FROM webhook_outbox WHERE id = :id AND claim = :claim;

-- name: outbox_pending
SELECT count(*) AS count FROM webhook_outbox;
