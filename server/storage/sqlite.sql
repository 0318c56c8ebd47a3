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
                  run_at, created_at, idempotency_key, request_hash, notify_url)
VALUES (:type, :payload, :priority,
        CASE WHEN :run_at > :created_at THEN 'scheduled' ELSE 'queued' END,
        0, :max_attempts, :timeout, :run_at, :created_at, :idempotency_key, :request_hash,
        :notify_url)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_jobs_without_keys
-- Bulk submission: executemany cannot return rows, see jobs_inserted_after.
INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts, timeout,
                  run_at, created_at, idempotency_key, request_hash, notify_url)
VALUES (:type, :payload, :priority,
        CASE WHEN :run_at > :created_at THEN 'scheduled' ELSE 'queued' END,
        0, :max_attempts, :timeout, :run_at, :created_at, NULL, NULL, :notify_url);

-- name: last_job_id
SELECT coalesce(max(id), 0) AS id FROM jobs;

-- name: jobs_inserted_after
-- Inside the write transaction no one else inserts: these are the new rows, in order.
SELECT * FROM jobs WHERE id > :id ORDER BY id;

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
-- A page, newest first. Filters (list_jobs_where_*, each ending in AND) are put
-- in at the mark (see Transaction.filtered): the jobs_status_id and
-- jobs_type_id indexes serve the query they make.
SELECT id, type, priority, status, attempts, max_attempts, timeout, run_at, created_at,
       started_at, finished_at, worker_id, error, idempotency_key, cancel_requested, notify_url,
       length(payload) AS payload_bytes, length(result) AS result_bytes
FROM jobs WHERE /* filters */ id < :cursor ORDER BY id DESC LIMIT :limit;

-- name: list_jobs_where_status
status = :status AND

-- name: list_jobs_where_type
type = :type AND

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
RETURNING id, type;

-- name: succeed_attempt
-- The common completion in one statement; anything else takes the general path.
UPDATE jobs
SET status = 'succeeded', result = :result, error = NULL, finished_at = :now,
    lease_expires_at = NULL, deadline = NULL, cancel_requested = 0
WHERE id = :id AND lease_id = :lease_id AND worker_id = :worker_id AND status = 'running'
RETURNING *;

-- name: end_attempt
-- Guarded by lease and status: a stale worker or a concurrent reaper changes nothing.
UPDATE jobs
SET status = :status, result = :result, error = :error, finished_at = :finished_at,
    run_at = :run_at, lease_id = :new_lease_id, lease_expires_at = NULL, deadline = NULL,
    attempts = attempts - :refund, cancel_requested = 0
WHERE id = :id AND lease_id = :lease_id AND worker_id = :worker_id AND status = 'running'
RETURNING *;

-- name: insert_attempt
INSERT INTO job_attempts (job_id, attempt, worker_id, lease_id, started_at, finished_at,
                          outcome, error, log)
VALUES (:job_id, :attempt, :worker_id, :lease_id, :started_at,
        :finished_at, :outcome, :error, :log);

-- name: list_attempts
SELECT * FROM job_attempts WHERE job_id = :job_id ORDER BY id;

-- name: extend_lease
UPDATE jobs SET lease_expires_at = :lease_expires_at
WHERE id = :id AND lease_id = :lease_id AND worker_id = :worker_id AND status = 'running'
RETURNING id, cancel_requested;

-- name: expired_attempts
SELECT * FROM jobs
WHERE status = 'running' AND (lease_expires_at < :lease_cutoff OR deadline < :now)
LIMIT :limit;

-- name: cancel_queued
-- Jobs not started yet (queued or scheduled) are cancelled at once.
UPDATE jobs SET status = 'cancelled', finished_at = :now
WHERE id = :id AND status IN ('queued', 'scheduled')
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

-- name: prunable_jobs
SELECT id FROM jobs
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < :before
LIMIT :limit;

-- name: delete_attempts
DELETE FROM job_attempts WHERE job_id IN (SELECT value FROM json_each(:ids));

-- name: delete_jobs
DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: count_by_status
SELECT status, count(*) AS count FROM jobs GROUP BY status;

-- name: count_by_type_and_status
SELECT type, status, count(*) AS count FROM jobs GROUP BY type, status;

-- name: ready_by_type_and_priority
-- Queue depth and the oldest ready job, read at scrape time so that servers agree.
SELECT type, priority, count(*) AS count, min(run_at) AS oldest_run_at FROM jobs
WHERE status = 'queued' AND run_at <= :now
GROUP BY type, priority;

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
SELECT w.id, w.host, w.types, w.slots, w.last_seen,
       (SELECT count(*) FROM jobs j WHERE j.status = 'running' AND j.worker_id = w.id) AS running
FROM workers w WHERE w.last_seen >= :since ORDER BY w.id;

-- name: prune_workers
DELETE FROM workers WHERE last_seen < :before;
