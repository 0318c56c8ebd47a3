-- Every SQL statement of the PostgreSQL backend: the same query names and
-- semantics as sqlite.sql. Times are Unix epoch seconds (double precision).
-- Parameters use psycopg's %(name)s style; list parameters arrive as arrays.
-- Locking rules (no deadlocks): a statement that locks several jobs either
-- skips locked rows (SKIP LOCKED) or the scheduler visits them in id order.
-- No semicolon may appear inside a comment of a migration (statements are split on it).

-- name: migration_1
CREATE TABLE jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    type text NOT NULL,
    payload text NOT NULL,
    priority integer NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    max_attempts integer NOT NULL,
    timeout double precision,
    run_at double precision NOT NULL,
    created_at double precision NOT NULL,
    started_at double precision,
    finished_at double precision,
    worker_id text,
    lease_id text,
    lease_expires_at double precision,
    deadline double precision,
    cancel_requested boolean NOT NULL DEFAULT false,
    result text,
    error text,
    idempotency_key text,
    request_hash text
);
CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The lease query walks this index in order: its cost does not grow with history.
CREATE INDEX jobs_ready ON jobs (priority DESC, id) WHERE status = 'queued';
CREATE INDEX jobs_queued_run_at ON jobs (run_at) WHERE status = 'queued';
CREATE INDEX jobs_status_id ON jobs (status, id);
CREATE INDEX jobs_type_id ON jobs (type, id);

-- name: migration_2
CREATE TABLE job_attempts (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL,
    attempt integer NOT NULL,
    worker_id text,
    lease_id text,
    started_at double precision,
    finished_at double precision NOT NULL,
    outcome text NOT NULL,
    error text
);
CREATE INDEX job_attempts_job ON job_attempts (job_id, id);
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');

-- name: migration_3
-- Jobs not due yet get their own status, off the lease path: the ready index
-- holds only jobs that can run now, and the housekeeper promotes the others.
-- Lease ids become random per attempt, and a lease request's id gets its own column.
ALTER TABLE jobs ADD COLUMN lease_request text;
UPDATE jobs SET status = 'scheduled'
WHERE status = 'queued' AND run_at > extract(epoch FROM clock_timestamp());
DROP INDEX jobs_queued_run_at;
CREATE INDEX jobs_scheduled_run_at ON jobs (run_at) WHERE status = 'scheduled';
CREATE INDEX jobs_lease_request ON jobs (lease_request) WHERE lease_request IS NOT NULL;
-- name: migration_4
-- Observability: each attempt's log, and the workers seen (see server/registry.py).
ALTER TABLE job_attempts ADD COLUMN log text;
CREATE TABLE workers (
    id text PRIMARY KEY,
    host text,
    types text,
    slots integer,
    last_seen double precision NOT NULL
);
CREATE INDEX workers_last_seen ON workers (last_seen);


-- name: migration_5
-- The webhook plugin's target (POST /jobs notify_url).
ALTER TABLE jobs ADD COLUMN notify_url text;

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
ALTER TABLE jobs ADD COLUMN queue text NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN depends_on text;
ALTER TABLE jobs ADD COLUMN deps_pending integer NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN on_dependency_failure text;
ALTER TABLE jobs ADD COLUMN has_dependants boolean NOT NULL DEFAULT false;
CREATE INDEX jobs_ready_queue ON jobs (queue, priority DESC, id) WHERE status = 'queued';
CREATE TABLE job_dependencies (
    depends_on bigint NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);
CREATE TABLE queues (name text PRIMARY KEY, paused boolean NOT NULL DEFAULT false);
CREATE TABLE concurrency_limits (
    kind text NOT NULL,
    name text NOT NULL,
    max_running integer NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE schedules (
    name text PRIMARY KEY,
    cron text NOT NULL,
    timezone text NOT NULL,
    job text NOT NULL,
    misfire text NOT NULL,
    paused boolean NOT NULL DEFAULT false,
    next_fire_at double precision NOT NULL,
    last_fire_at double precision,
    created_at double precision NOT NULL
);
CREATE INDEX schedules_due ON schedules (next_fire_at);

-- name: migration_8
-- Job ids are never reused (issue 18). The identity column already never
-- gives an id twice (GENERATED ALWAYS refuses explicit ids, NO CYCLE stops at
-- the end of bigint), and its sequence is moved past every id the dependency
-- and attempt tables name, should any be ahead of it.
-- Dependency rows become edges still to resolve: resolution deletes each one
-- as it counts it, so a waiting job's deps_pending is the number of its edges.
-- Edges already resolved (their dependency finished) or left behind by
-- pruning are dropped. dependency_cascades marks finished jobs whose
-- dependants are still being resolved, a chunk per transaction (the housekeeper).
ALTER TABLE jobs ALTER COLUMN id SET NO CYCLE;
SELECT setval(pg_get_serial_sequence('jobs', 'id'), seen)
FROM (
    SELECT greatest(
        (SELECT max(id) FROM jobs),
        (SELECT max(depends_on) FROM job_dependencies),
        (SELECT max(job_id) FROM job_dependencies),
        (SELECT max(job_id) FROM job_attempts)
    ) AS seen
) AS ids
WHERE seen > coalesce(pg_sequence_last_value(pg_get_serial_sequence('jobs', 'id')::regclass), 0);
DELETE FROM job_dependencies
WHERE NOT EXISTS (
    SELECT 1 FROM jobs AS dependency
    WHERE dependency.id = job_dependencies.depends_on
      AND dependency.status NOT IN ('succeeded', 'failed', 'cancelled')
) OR NOT EXISTS (
    SELECT 1 FROM jobs AS dependant
    WHERE dependant.id = job_dependencies.job_id
      AND dependant.depends_on::jsonb @> to_jsonb(job_dependencies.depends_on)
);
CREATE INDEX job_dependencies_job ON job_dependencies (job_id);
UPDATE jobs SET deps_pending = (
    SELECT count(*) FROM job_dependencies WHERE job_dependencies.job_id = jobs.id
) WHERE status = 'waiting';
CREATE TABLE dependency_cascades (job_id bigint PRIMARY KEY);

-- name: migration_9
-- Observability without scanning jobs (issue 18): the number of jobs by type,
-- queue, status and priority, kept in the transaction of each change. Many
-- servers change jobs at once here, so no change updates shared count rows
-- (every transaction would queue on the same hot rows, and two updating them
-- in different orders would deadlock): each appends delta rows, which conflict
-- with nothing, and the housekeeper folds them into job_counts. Readers add
-- both up in one snapshot.
-- jobs_queued_age gives the oldest ready job of each type and priority.
CREATE TABLE job_counts (
    type text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    priority integer NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (type, queue, status, priority)
);
CREATE TABLE job_count_deltas (
    type text NOT NULL,
    queue text NOT NULL,
    status text NOT NULL,
    priority integer NOT NULL,
    delta integer NOT NULL
);
INSERT INTO job_counts (type, queue, status, priority, count)
SELECT type, queue, status, priority, count(*) FROM jobs GROUP BY type, queue, status, priority;
CREATE FUNCTION taskframe_count_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        INSERT INTO job_count_deltas VALUES (OLD.type, OLD.queue, OLD.status, OLD.priority, -1);
    ELSE
        INSERT INTO job_count_deltas VALUES
            (OLD.type, OLD.queue, OLD.status, OLD.priority, -1),
            (NEW.type, NEW.queue, NEW.status, NEW.priority, 1);
    END IF;
    RETURN NULL;
END
$$;
-- Inserts are counted by their callers (count_adds), as are the two moves of
-- every job's hot path, queued to running (the lease) and running to succeeded
-- (the completion), one count_moves per batch (server/counts.py): a delta row per
-- group, not per job. The triggers count every other change.
-- No statement changes a job's type, queue or priority (tests/unit/test_counts.py).
CREATE TRIGGER job_counts_update AFTER UPDATE OF status ON jobs
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
    AND NOT (OLD.status = 'queued' AND NEW.status = 'running')
    AND NOT (OLD.status = 'running' AND NEW.status = 'succeeded'))
EXECUTE FUNCTION taskframe_count_jobs();
CREATE TRIGGER job_counts_delete AFTER DELETE ON jobs
FOR EACH ROW EXECUTE FUNCTION taskframe_count_jobs();
CREATE INDEX jobs_queued_age ON jobs (type, priority, run_at) WHERE status = 'queued';

-- name: migration_10
-- The webhook outbox (issue 18, server/outbox.py): one row per finished job with a
-- notify_url, written by a trigger in the transaction that finished the job, whatever
-- statement finished it, so that a crash after that commit loses no delivery.
-- next_attempt_at: when the row is due, or, while a server holds it (claim set), when
-- that claim lapses. origin and body are filled in when the row is first claimed.
-- The trigger function keeps the search_path it was created with (the schema of jobs).
CREATE TABLE webhook_outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL,
    url text NOT NULL,
    status text NOT NULL,
    finished_at double precision,
    delivery_id text NOT NULL,
    created_at double precision NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL,
    claim text,
    origin text,
    body text,
    last_error text
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at);
CREATE FUNCTION taskframe_webhook_outbox() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO webhook_outbox (job_id, url, status, finished_at, delivery_id, created_at,
                                next_attempt_at)
    VALUES (NEW.id, NEW.notify_url, NEW.status, NEW.finished_at,
            md5(random()::text || clock_timestamp()::text),
            coalesce(NEW.finished_at, extract(epoch FROM clock_timestamp())),
            coalesce(NEW.finished_at, extract(epoch FROM clock_timestamp())));
    RETURN NULL;
END
$$;
CREATE TRIGGER webhook_outbox_on_finish AFTER UPDATE OF status ON jobs
FOR EACH ROW
WHEN (NEW.notify_url IS NOT NULL
      AND NEW.status IN ('succeeded', 'failed', 'cancelled')
      AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled'))
EXECUTE FUNCTION taskframe_webhook_outbox();

-- name: migration_11
-- Tasks (issue 20): a failed attempt's traceback, and a running job's progress
-- (JSON: fraction, message, the attempt that reported it, when).
ALTER TABLE job_attempts ADD COLUMN traceback text;
ALTER TABLE jobs ADD COLUMN progress text;

-- name: migration_12
-- Operations (issue 23): see the SQLite migration 12 for what each part is for.
CREATE INDEX jobs_priority_id ON jobs (priority, id);
CREATE INDEX jobs_queue_id ON jobs (queue, id);
DROP INDEX jobs_queued_age;
CREATE INDEX jobs_queued_age ON jobs (type, queue, priority, run_at) WHERE status = 'queued';
CREATE TABLE job_dependants (
    depends_on bigint NOT NULL,
    job_id bigint NOT NULL,
    PRIMARY KEY (depends_on, job_id)
);
CREATE INDEX job_dependants_job ON job_dependants (job_id);
INSERT INTO job_dependants (depends_on, job_id)
SELECT DISTINCT CAST(listed.value AS bigint), jobs.id
FROM jobs, jsonb_array_elements_text(CAST(jobs.depends_on AS jsonb)) AS listed(value)
WHERE jobs.depends_on IS NOT NULL
ON CONFLICT DO NOTHING;
ALTER TABLE jobs ADD COLUMN live_log text;
CREATE TABLE job_rollup (
    minute bigint NOT NULL,
    type text NOT NULL,
    queue text NOT NULL,
    succeeded bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    depth bigint,
    oldest_run_at double precision,
    PRIMARY KEY (minute, type, queue)
);

-- name: migration_13
-- The job-count trigger's function looks its delta table up in the schema it was
-- created in, not on the caller's search_path: a session on another path (a
-- DBA's psql, a script with schema-qualified names) can change and delete jobs.
ALTER FUNCTION taskframe_count_jobs() SET search_path FROM CURRENT;

-- name: schema_lock_wait
-- Migrating may wait for another server's migration as long as it takes.
SET LOCAL lock_timeout = 0;

-- name: schema_lock
-- Servers starting at once migrate one after the other (0x7466 = "tf").
SELECT pg_advisory_xact_lock(29798, 1);

-- name: version_table_exists
SELECT to_regclass('taskframe_schema') IS NOT NULL AS present;

-- name: create_version_table
CREATE TABLE IF NOT EXISTS taskframe_schema (version integer NOT NULL);

-- name: get_version
SELECT max(version) AS version FROM taskframe_schema;

-- name: set_version
INSERT INTO taskframe_schema (version) VALUES (%(version)s);

-- name: ping
SELECT 1 AS ok;

-- name: change_channel
-- Where servers tell each other of changes: one channel per schema, so that
-- deployments sharing a database, each in a schema of its own, do not wake each
-- other's long-polls ('public' keeps the channel's first name; md5 keeps others
-- within the 63 bytes of a channel name).
SELECT CASE WHEN current_schema() = 'public' THEN 'taskframe_jobs'
            ELSE 'taskframe_jobs_' || left(md5(current_schema()), 16) END AS channel;

-- name: notify_change
SELECT pg_notify(%(channel)s, %(origin)s);

-- name: insert_job
INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts, timeout,
                  run_at, created_at, idempotency_key, request_hash, notify_url, queue,
                  depends_on, on_dependency_failure)
VALUES (%(type)s, %(payload)s, %(priority)s,
        CASE WHEN %(run_at)s > %(created_at)s THEN 'scheduled' ELSE 'queued' END,
        0, %(max_attempts)s, %(timeout)s, %(run_at)s, %(created_at)s,
        %(idempotency_key)s, %(request_hash)s, %(notify_url)s, %(queue)s,
        %(depends_on)s, %(on_dependency_failure)s)
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING *;

-- name: insert_jobs_without_keys
-- Bulk submission in one statement (one round trip): one array per field, read
-- with unnest in the order given; ids are drawn in that order.
INSERT INTO jobs (type, payload, priority, status, attempts, max_attempts, timeout,
                  run_at, created_at, notify_url, queue, on_dependency_failure)
SELECT type, payload, priority,
       CASE WHEN run_at > created_at THEN 'scheduled' ELSE 'queued' END,
       0, max_attempts, timeout, run_at, created_at, notify_url, queue, on_dependency_failure
FROM unnest(%(type)s::text[], %(payload)s::text[], %(priority)s::int[],
            %(max_attempts)s::int[], %(timeout)s::float8[], %(run_at)s::float8[],
            %(created_at)s::float8[], %(notify_url)s::text[], %(queue)s::text[],
            %(on_dependency_failure)s::text[])
     WITH ORDINALITY AS j (type, payload, priority, max_attempts, timeout, run_at,
                           created_at, notify_url, queue, on_dependency_failure, n)
ORDER BY n
RETURNING id;

-- name: get_job
SELECT * FROM jobs WHERE id = %(id)s;

-- name: get_job_for_update
SELECT * FROM jobs WHERE id = %(id)s FOR UPDATE;

-- name: get_jobs_for_update
-- One batch's rows, locked in id order like every multi-row writer: no deadlocks.
SELECT * FROM jobs WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR UPDATE;

-- name: get_job_by_key
SELECT * FROM jobs WHERE idempotency_key = %(idempotency_key)s;

-- name: get_jobs
SELECT * FROM jobs WHERE id = ANY(%(ids)s::bigint[]);

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
LIMIT %(limit)s;

-- name: list_jobs_where_status
status = %(status)s AND

-- name: list_jobs_where_type
type = %(type)s AND

-- name: list_jobs_where_queue
queue = %(queue)s AND

-- name: list_jobs_where_key
idempotency_key = %(key)s AND

-- name: list_jobs_where_created_after
created_at >= %(created_after)s AND

-- name: list_jobs_where_created_before
created_at < %(created_before)s AND

-- name: list_jobs_where_finished_after
finished_at >= %(finished_after)s AND

-- name: list_jobs_where_finished_before
finished_at < %(finished_before)s AND

-- name: list_jobs_where_dependant_of
-- The jobs that name the job in their depends_on (job_dependants keeps them all).
id IN (SELECT job_id FROM job_dependants WHERE depends_on = %(dependency_of)s) AND

-- name: list_jobs_where_id_desc
id < %(after_id)s ORDER BY id DESC

-- name: list_jobs_where_id_asc
id > %(after_id)s ORDER BY id

-- name: list_jobs_where_priority_desc
(priority, id) < (%(after_key)s, %(after_id)s) ORDER BY priority DESC, id DESC

-- name: list_jobs_where_priority_asc
(priority, id) > (%(after_key)s, %(after_id)s) ORDER BY priority, id

-- name: list_jobs_where_finished_desc
status IN ('succeeded', 'failed', 'cancelled')
AND (finished_at, id) < (%(after_key)s, %(after_id)s) ORDER BY finished_at DESC, id DESC

-- name: list_jobs_where_finished_asc
status IN ('succeeded', 'failed', 'cancelled')
AND (finished_at, id) > (%(after_key)s, %(after_id)s) ORDER BY finished_at, id

-- name: insert_dependants
-- One batch's edges, kept for good.
INSERT INTO job_dependants (depends_on, job_id)
SELECT * FROM unnest(%(depends_on)s::bigint[], %(job_id)s::bigint[])
ON CONFLICT DO NOTHING;

-- name: delete_dependant_links
-- A pruned job's links, both ways (the other job's depends_on still names it).
DELETE FROM job_dependants
WHERE depends_on = ANY(%(ids)s::bigint[]) OR job_id = ANY(%(ids)s::bigint[]);

-- name: append_live_log
-- Fenced like a heartbeat; the last 64 KiB of the running attempt's log are kept.
UPDATE jobs SET live_log = right(coalesce(live_log || %(log)s, %(log)s), 65536)
WHERE id = %(id)s AND lease_id = %(lease_id)s AND worker_id = %(worker_id)s
  AND status = 'running';

-- name: get_live_log
SELECT attempts, worker_id, started_at, live_log FROM jobs WHERE id = %(id)s AND status = 'running';

-- name: lock_rollup
-- Servers write the rollup one at a time: a snapshot clears and rewrites the
-- minute's rows, which could deadlock with another server's adds.
SELECT pg_advisory_xact_lock(29798, 4);

-- name: rollup_add
-- Each server adds the jobs it saw finish in the minute: they add up across servers.
INSERT INTO job_rollup (minute, type, queue, succeeded, failed)
VALUES (%(minute)s, %(type)s, %(queue)s, %(succeeded)s, %(failed)s)
ON CONFLICT (minute, type, queue) DO UPDATE
SET succeeded = job_rollup.succeeded + excluded.succeeded,
    failed = job_rollup.failed + excluded.failed;

-- name: rollup_snapshot
-- The queue as it was at the minute's end: whichever server writes last, the same.
INSERT INTO job_rollup (minute, type, queue, depth, oldest_run_at)
VALUES (%(minute)s, %(type)s, %(queue)s, %(depth)s, %(oldest_run_at)s)
ON CONFLICT (minute, type, queue) DO UPDATE
SET depth = excluded.depth, oldest_run_at = excluded.oldest_run_at;

-- name: rollup_clear_snapshot
-- Before a snapshot: a type or queue emptied since the last one shows no depth.
UPDATE job_rollup SET depth = NULL, oldest_run_at = NULL
WHERE minute = %(minute)s AND depth IS NOT NULL;

-- name: rollup_read
-- The window's minutes, all types and queues added up, or those of the filters
-- (rollup_read_where_*): a row per minute whatever the number of types.
SELECT minute, sum(succeeded) AS succeeded, sum(failed) AS failed, sum(depth) AS depth,
       min(oldest_run_at) AS oldest_run_at
FROM job_rollup WHERE /* filters */ minute >= %(since)s
GROUP BY minute ORDER BY minute;

-- name: rollup_read_where_type
type = %(type)s AND

-- name: rollup_read_where_queue
queue = %(queue)s AND

-- name: rollup_names
-- The types and queues the window has rows for (the charts' choices).
SELECT DISTINCT type, queue FROM job_rollup WHERE minute >= %(since)s;

-- name: rollup_prune
DELETE FROM job_rollup WHERE minute < %(before)s;

-- name: lease_jobs
-- SKIP LOCKED: concurrent leasers (any number of servers) take disjoint rows
-- and never wait for each other. A row another transaction changed meanwhile
-- is re-checked against the WHERE clause once locked. Every queued job is due
-- (not yet due ones are 'scheduled'): no run_at test. Each job gets its own
-- random lease id, the n-th of lease_ids in lease order.
WITH candidates AS MATERIALIZED (
    SELECT id, priority FROM jobs
    WHERE status = 'queued' AND type = ANY(%(types)s::text[])
    ORDER BY priority DESC, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), numbered AS (
    SELECT id, row_number() OVER (ORDER BY priority DESC, id) AS n FROM candidates
)
UPDATE jobs
SET status = 'running', attempts = attempts + 1, worker_id = %(worker_id)s,
    lease_id = (%(lease_ids)s::text[])[numbered.n],
    lease_request = %(lease_request)s,
    lease_expires_at = %(lease_expires_at)s,
    started_at = %(now)s, finished_at = NULL,
    deadline = CASE WHEN timeout IS NULL THEN NULL ELSE %(now)s + timeout END
FROM numbered
WHERE jobs.id = numbered.id AND jobs.status = 'queued'
RETURNING jobs.*;

-- name: any_queued
-- Whether a lease could find anything, read without a transaction or a lock: a queued
-- job of these types (in these queues; NULL: any). A long-poll looks so before it writes.
SELECT EXISTS (
    SELECT 1 FROM jobs
    WHERE status = 'queued' AND type = ANY(%(types)s::text[])
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
) AS found;

-- name: leased_by_request
SELECT * FROM jobs
WHERE lease_request = %(lease_request)s AND status = 'running' AND worker_id = %(worker_id)s;

-- name: next_run_at
SELECT min(run_at) AS run_at FROM jobs WHERE status = 'scheduled';

-- name: promote_due
-- The housekeeper: scheduled jobs whose time came join the queue, a batch at a
-- time. SKIP LOCKED: servers promoting at once take disjoint rows.
WITH due AS MATERIALIZED (
    SELECT id FROM jobs
    WHERE status = 'scheduled' AND run_at <= %(now)s
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET status = 'queued'
FROM due
WHERE jobs.id = due.id AND jobs.status = 'scheduled'
RETURNING jobs.id, jobs.type, jobs.queue;

-- name: end_attempts
-- Every end of attempts of a batch in one statement (reports, reaps, releases):
-- each row is fenced by its own lease, worker and status, so a stale or re-sent one
-- changes nothing and is not returned. Each row gives the job's next status
-- (next_status decided it), run_at, finished_at, error and result.
UPDATE jobs
SET status = ended.status, result = ended.result, error = ended.error,
    finished_at = ended.finished_at, run_at = ended.run_at, lease_id = ended.new_lease_id,
    lease_expires_at = NULL, deadline = NULL, attempts = jobs.attempts - ended.refund,
    cancel_requested = false, live_log = NULL
FROM unnest(%(id)s::bigint[], %(lease_id)s::text[], %(worker_id)s::text[],
            %(status)s::text[], %(result)s::text[], %(error)s::text[],
            %(finished_at)s::float8[], %(run_at)s::float8[], %(new_lease_id)s::text[],
            %(refund)s::int[])
     AS ended (id, lease_id, worker_id, status, result, error, finished_at, run_at,
               new_lease_id, refund)
WHERE jobs.id = ended.id AND jobs.lease_id = ended.lease_id
  AND jobs.worker_id = ended.worker_id AND jobs.status = 'running'
RETURNING jobs.*;

-- name: insert_attempts
-- The history rows of a batch in one statement, in the order given.
INSERT INTO job_attempts (job_id, attempt, worker_id, lease_id, started_at, finished_at,
                          outcome, error, log, traceback)
SELECT job_id, attempt, worker_id, lease_id, started_at, finished_at, outcome, error, log,
       traceback
FROM unnest(%(job_id)s::bigint[], %(attempt)s::int[], %(worker_id)s::text[],
            %(lease_id)s::text[], %(started_at)s::float8[], %(finished_at)s::float8[],
            %(outcome)s::text[], %(error)s::text[], %(log)s::text[], %(traceback)s::text[])
     WITH ORDINALITY AS a (job_id, attempt, worker_id, lease_id, started_at, finished_at,
                           outcome, error, log, traceback, n)
ORDER BY n;

-- name: list_attempts
SELECT * FROM job_attempts WHERE job_id = %(job_id)s ORDER BY id;

-- name: extend_lease
UPDATE jobs SET lease_expires_at = %(lease_expires_at)s
WHERE id = %(id)s AND lease_id = %(lease_id)s AND worker_id = %(worker_id)s
  AND status = 'running'
RETURNING id, cancel_requested;

-- name: set_progress
-- Fenced like a heartbeat. The attempt is the row's, so an old attempt's progress is known.
UPDATE jobs
SET progress = (CAST(%(progress)s AS jsonb) || jsonb_build_object('attempt', attempts))::text
WHERE id = %(id)s AND lease_id = %(lease_id)s AND worker_id = %(worker_id)s
  AND status = 'running';

-- name: expired_attempts
-- Rows a completion is changing right now are skipped: the next reap sees them.
SELECT * FROM jobs
WHERE status = 'running' AND (lease_expires_at < %(lease_cutoff)s OR deadline < %(now)s)
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: cancel_queued
-- Jobs not started yet (queued, scheduled or waiting) are cancelled at once.
UPDATE jobs SET status = 'cancelled', finished_at = %(now)s
WHERE id = %(id)s AND status IN ('queued', 'scheduled', 'waiting')
RETURNING *;

-- name: request_cancel
UPDATE jobs SET cancel_requested = true WHERE id = %(id)s AND status = 'running' RETURNING *;

-- name: retry_job
UPDATE jobs
SET status = 'queued', run_at = %(now)s, started_at = NULL, finished_at = NULL,
    attempt_grant = COALESCE(attempt_grant, max_attempts),
    max_attempts = attempts + COALESCE(attempt_grant, max_attempts),
    result = NULL, error = NULL, worker_id = NULL, lease_id = NULL, cancel_requested = false
WHERE id = %(id)s AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: unresolved_dependencies
-- A cancelled dependant keeps the edges of the dependencies that had not finished.
SELECT count(*) AS pending FROM job_dependencies WHERE job_id = %(id)s;

-- name: prunable_jobs
-- SKIP LOCKED: servers pruning at once delete disjoint batches. Not a job
-- whose dependants are still being resolved (dependency_cascades).
SELECT id FROM jobs
WHERE status IN ('succeeded', 'failed', 'cancelled') AND finished_at < %(before)s
  AND id NOT IN (SELECT job_id FROM dependency_cascades)
ORDER BY id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: delete_attempts
DELETE FROM job_attempts WHERE job_id = ANY(%(ids)s::bigint[]);

-- name: delete_jobs
DELETE FROM jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: delete_dependencies
-- Edges where a pruned job is the dependency (none unless a cascade was cut short)...
DELETE FROM job_dependencies WHERE depends_on = ANY(%(ids)s::bigint[]);

-- name: delete_dependants
-- ... and where it is the dependant (cancelled while its dependencies still ran).
DELETE FROM job_dependencies WHERE job_id = ANY(%(ids)s::bigint[]);

-- name: job_counts
-- Jobs by type, queue, status and priority: the folded counts plus the deltas
-- not folded yet, in one snapshot (a small table and a short one: no scan of jobs).
SELECT type, queue, status, priority, sum(count) AS count FROM (
    SELECT type, queue, status, priority, count FROM job_counts
    UNION ALL
    SELECT type, queue, status, priority, delta FROM job_count_deltas
) AS counted
GROUP BY type, queue, status, priority
HAVING sum(count) <> 0;

-- name: count_adds
-- Jobs inserted (no trigger counts inserts), one delta row per group of jobs.
INSERT INTO job_count_deltas (type, queue, status, priority, delta)
VALUES (%(type)s, %(queue)s, %(status)s, %(priority)s, %(n)s);

-- name: count_moves
-- The hot path's moves (the triggers skip them), one statement per group of jobs.
INSERT INTO job_count_deltas (type, queue, status, priority, delta)
VALUES (%(type)s, %(queue)s, %(source)s, %(priority)s, -%(n)s),
       (%(type)s, %(queue)s, %(target)s, %(priority)s, %(n)s);

-- name: counts_by_type
SELECT type AS name, status, sum(count) AS count FROM (
    SELECT type, status, count FROM job_counts
    UNION ALL
    SELECT type, status, delta FROM job_count_deltas
) AS counted
GROUP BY type, status HAVING sum(count) <> 0;

-- name: counts_by_queue
SELECT queue AS name, status, sum(count) AS count FROM (
    SELECT queue, status, count FROM job_counts
    UNION ALL
    SELECT queue, status, delta FROM job_count_deltas
) AS counted
GROUP BY queue, status HAVING sum(count) <> 0;

-- name: fold_job_counts
-- The housekeeper: deltas into job_counts, in key order. One server at a time
-- (the others skip); deltas committed meanwhile wait for the next fold.
WITH folding AS (
    SELECT pg_try_advisory_xact_lock(29798, 3) AS mine
), folded AS (
    DELETE FROM job_count_deltas WHERE (SELECT mine FROM folding)
    RETURNING type, queue, status, priority, delta
)
INSERT INTO job_counts (type, queue, status, priority, count)
SELECT type, queue, status, priority, sum(delta) FROM folded
GROUP BY type, queue, status, priority
ORDER BY type, queue, status, priority
ON CONFLICT (type, queue, status, priority)
DO UPDATE SET count = job_counts.count + excluded.count;

-- name: drop_empty_counts
DELETE FROM job_counts WHERE count = 0 AND pg_try_advisory_xact_lock(29798, 3);

-- name: count_by_status
SELECT status, count(*) AS count FROM jobs GROUP BY status;

-- name: count_by_type_and_status
SELECT type, status, count(*) AS count FROM jobs GROUP BY type, status;

-- name: ready_by_type_and_priority
-- Queue depth and the oldest ready job, read at scrape time so that servers agree:
-- the depth from the counts, the oldest one step into jobs_queued_age per group
-- (type, queue and priority: callers add queues up where they show none).
SELECT ready.type, ready.queue, ready.priority, ready.count, (
    SELECT min(run_at) FROM jobs
    WHERE status = 'queued' AND type = ready.type AND queue = ready.queue
      AND priority = ready.priority AND run_at <= %(now)s
) AS oldest_run_at
FROM (
    SELECT type, queue, priority, sum(count) AS count FROM (
        SELECT type, queue, priority, count FROM job_counts WHERE status = 'queued'
        UNION ALL
        SELECT type, queue, priority, delta FROM job_count_deltas WHERE status = 'queued'
    ) AS queued
    GROUP BY type, queue, priority HAVING sum(count) > 0
) AS ready;

-- name: upsert_worker
-- A heartbeat knows only the id: the other fields keep what the last lease said.
INSERT INTO workers (id, host, types, slots, last_seen)
VALUES (%(id)s, %(host)s::text, %(types)s::text, %(slots)s::integer, %(now)s)
ON CONFLICT (id) DO UPDATE
SET host = coalesce(excluded.host, workers.host),
    types = coalesce(excluded.types, workers.types),
    slots = coalesce(excluded.slots, workers.slots),
    last_seen = excluded.last_seen;

-- name: list_workers
-- The most recently seen first, at most %(limit)s of them (a bound on /workers and /health);
-- their running jobs counted once for all of them (not once per worker).
SELECT w.id, w.host, w.types, w.slots, w.last_seen, coalesce(r.running, 0) AS running
FROM (SELECT * FROM workers WHERE last_seen >= %(since)s ORDER BY last_seen DESC LIMIT %(limit)s) w
LEFT JOIN (
    SELECT worker_id, count(*) AS running FROM jobs
    WHERE status = 'running' GROUP BY worker_id
) AS r ON r.worker_id = w.id
ORDER BY w.id;

-- name: prune_workers
DELETE FROM workers WHERE last_seen < %(before)s;

-- ------------------------------------------------------------ routing (issue 13)

-- name: lease_controls
-- Read by every lease: both tables are tiny (and usually empty, then the
-- plain lease_jobs runs, exactly as before queues and limits existed).
SELECT 'paused' AS kind, name, 0 AS max_running FROM queues WHERE paused
UNION ALL
SELECT kind, name, max_running FROM concurrency_limits;

-- name: lock_limits
-- Count-and-lease must be atomic across servers: whoever leases a limited
-- type or queue holds its limit row until commit (locked in key order).
SELECT kind, name FROM concurrency_limits
WHERE (kind, name) IN (SELECT * FROM unnest(%(kinds)s::text[], %(names)s::text[]))
ORDER BY kind, name
FOR UPDATE;

-- name: count_running_by_type
SELECT count(*) AS count FROM jobs WHERE status = 'running' AND type = %(name)s;

-- name: count_running_by_queue
SELECT count(*) AS count FROM jobs WHERE status = 'running' AND queue = %(name)s;

-- name: lease_candidates
-- The routed lease, every queue: the ready index in order, skipping what is
-- paused or at its limit (excluded) and what this transaction picked already.
SELECT id, priority, type, queue FROM jobs
WHERE status = 'queued' AND type = ANY(%(types)s::text[])
  AND queue <> ALL(%(excluded_queues)s::text[])
  AND type <> ALL(%(excluded_types)s::text[])
  AND id <> ALL(%(picked)s::bigint[])
ORDER BY priority DESC, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: lease_candidates_in_queues
-- The routed lease, named queues: each queue's slice of jobs_ready_queue.
SELECT id, priority, type, queue FROM jobs
WHERE status = 'queued' AND queue = ANY(%(queues)s::text[])
  AND type = ANY(%(types)s::text[])
  AND queue <> ALL(%(excluded_queues)s::text[])
  AND type <> ALL(%(excluded_types)s::text[])
  AND id <> ALL(%(picked)s::bigint[])
ORDER BY priority DESC, id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: lease_picked
-- The n-th picked id gets the n-th random lease id (the rows are locked already).
UPDATE jobs
SET status = 'running', attempts = attempts + 1, worker_id = %(worker_id)s,
    lease_id = picked.lease_id,
    lease_request = %(lease_request)s,
    lease_expires_at = %(lease_expires_at)s,
    started_at = %(now)s, finished_at = NULL,
    deadline = CASE WHEN timeout IS NULL THEN NULL ELSE %(now)s + timeout END
FROM unnest(%(ids)s::bigint[], %(lease_ids)s::text[]) AS picked(id, lease_id)
WHERE jobs.id = picked.id AND jobs.status = 'queued'
RETURNING jobs.*;

-- name: queue_counts
SELECT queue, status, count(*) AS count FROM jobs GROUP BY queue, status;

-- name: list_queue_states
SELECT name, paused FROM queues ORDER BY name;

-- name: set_queue_paused
INSERT INTO queues (name, paused) VALUES (%(name)s, %(paused)s::int::boolean)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused;

-- name: list_limits
SELECT kind, name, max_running FROM concurrency_limits ORDER BY kind, name;

-- name: set_limit
INSERT INTO concurrency_limits (kind, name, max_running)
VALUES (%(kind)s, %(name)s, %(max_running)s)
ON CONFLICT (kind, name) DO UPDATE SET max_running = excluded.max_running;

-- name: delete_limit
DELETE FROM concurrency_limits WHERE kind = %(kind)s AND name = %(name)s;

-- ------------------------------------------------------- dependencies (issue 13)

-- name: lock_dependencies
-- In id order, like every multi-row writer: a completion of one of them waits for
-- this submission (or this one sees it finished), never both.
SELECT id, status FROM jobs WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR UPDATE;

-- name: mark_dependencies
UPDATE jobs SET has_dependants = true
WHERE id = ANY(%(ids)s::bigint[]) AND NOT has_dependants;

-- name: insert_dependencies
-- One batch's pending edges.
INSERT INTO job_dependencies (depends_on, job_id)
SELECT * FROM unnest(%(depends_on)s::bigint[], %(job_id)s::bigint[])
ON CONFLICT DO NOTHING;

-- name: start_waiting
UPDATE jobs SET status = 'waiting', deps_pending = %(pending)s WHERE id = %(id)s RETURNING *;

-- name: take_dependants
-- A chunk of a finished job's dependants, in id order. Each edge is deleted as
-- it is counted: a job that finishes again (retried) resolves nothing twice.
-- The finished job's row is locked by its caller: no one else takes its edges.
-- A key range (up to the chunk's last id), not IN (...): an index range scan.
DELETE FROM job_dependencies
WHERE depends_on = %(id)s AND job_id <= (
    SELECT max(job_id) FROM (
        SELECT job_id FROM job_dependencies WHERE depends_on = %(id)s
        ORDER BY job_id LIMIT %(limit)s
    ) AS chunk
)
RETURNING job_id;

-- name: lock_dependants
-- In id order, like every multi-row writer: no deadlocks.
SELECT id FROM jobs WHERE id = ANY(%(ids)s::bigint[]) AND status = 'waiting'
ORDER BY id FOR UPDATE;

-- name: resolve_dependants
-- One dependency fewer for each waiting job of the chunk, set-based. A failed
-- dependency cancels the dependants that do not run anyway; the last one
-- makes a dependant ready (queued, or scheduled when its run_at is later).
UPDATE jobs
SET deps_pending = deps_pending - 1,
    status = CASE
        WHEN %(failed)s AND on_dependency_failure IS DISTINCT FROM 'run' THEN 'cancelled'
        WHEN deps_pending > 1 THEN 'waiting'
        WHEN run_at <= %(now)s THEN 'queued'
        ELSE 'scheduled'
    END,
    finished_at = CASE
        WHEN %(failed)s AND on_dependency_failure IS DISTINCT FROM 'run' THEN %(now)s
        ELSE finished_at
    END,
    error = CASE
        WHEN %(failed)s AND on_dependency_failure IS DISTINCT FROM 'run' THEN %(error)s
        ELSE error
    END
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'waiting'
RETURNING *;

-- name: start_cascade
-- The rest of this job's dependants is left to the housekeeper (durably).
INSERT INTO dependency_cascades (job_id) VALUES (%(id)s) ON CONFLICT DO NOTHING;

-- name: next_cascades
-- SKIP LOCKED: servers cascading at once take different jobs.
SELECT job_id FROM dependency_cascades ORDER BY job_id LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: end_cascade
DELETE FROM dependency_cascades WHERE job_id = %(id)s;

-- name: cascade_pending
SELECT job_id FROM dependency_cascades WHERE job_id = %(id)s;

-- name: attach_dependencies
-- The starting status of a batch's jobs just inserted with dependencies (next_status
-- decided each: unchanged, waiting, or cancelled because a dependency failed).
UPDATE jobs
SET status = a.status, depends_on = a.depends_on, deps_pending = a.deps_pending,
    finished_at = a.finished_at, error = a.error
FROM unnest(%(id)s::bigint[], %(status)s::text[], %(depends_on)s::text[],
            %(deps_pending)s::int[], %(finished_at)s::float8[], %(error)s::text[])
     AS a (id, status, depends_on, deps_pending, finished_at, error)
WHERE jobs.id = a.id
RETURNING jobs.*;

-- name: dependency_results
SELECT id, status, result FROM jobs WHERE id = ANY(%(ids)s::bigint[]);

-- name: existing_ids
SELECT id FROM jobs WHERE id = ANY(%(ids)s::bigint[]);

-- ---------------------------------------------------------- schedules (issue 13)

-- name: lock_schedules
-- Servers adding schedules at once count one after the other (the --max-schedules bound).
SELECT pg_advisory_xact_lock(29798, 2);

-- name: count_schedules
SELECT count(*) AS count FROM schedules;

-- name: insert_schedule
INSERT INTO schedules (name, cron, timezone, job, misfire, paused, next_fire_at, created_at)
VALUES (%(name)s, %(cron)s, %(timezone)s, %(job)s, %(misfire)s, %(paused)s::int::boolean,
        %(next_fire_at)s, %(created_at)s)
ON CONFLICT (name) DO NOTHING
RETURNING *;

-- name: get_schedule
SELECT * FROM schedules WHERE name = %(name)s;

-- name: list_schedules
SELECT * FROM schedules ORDER BY name;

-- name: delete_schedule
DELETE FROM schedules WHERE name = %(name)s;

-- name: set_schedule_paused
UPDATE schedules SET paused = %(paused)s::int::boolean, next_fire_at = %(next_fire_at)s
WHERE name = %(name)s
RETURNING *;

-- name: next_schedule_fire
SELECT min(next_fire_at) AS next_fire_at FROM schedules WHERE NOT paused;

-- name: due_schedules
-- Servers firing at once take disjoint schedules; the jobs' idempotency keys
-- (schedule:<name>:<fire time>) make one job per time in any case.
SELECT * FROM schedules
WHERE next_fire_at <= %(now)s AND NOT paused
ORDER BY name
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: advance_schedule
UPDATE schedules SET next_fire_at = %(next_fire_at)s, last_fire_at = %(last_fire_at)s
WHERE name = %(name)s AND next_fire_at = %(previous)s;

-- ------------------------------------------------------ webhook outbox (issue 18)

-- name: outbox_next_due
-- When the next delivery this server may start is due (a claimed row: when its claim
-- lapses). Rows of receivers at their limit here (busy) wait for a sender to finish.
SELECT next_attempt_at FROM webhook_outbox
WHERE origin IS NULL OR origin <> ALL(%(busy)s::text[])
ORDER BY next_attempt_at
LIMIT 1;

-- name: outbox_claim
-- Servers claiming at once skip each other's rows (SKIP LOCKED) and take disjoint ones.
-- A claim lasts until claimed_until.
UPDATE webhook_outbox SET claim = %(claim)s, next_attempt_at = %(claimed_until)s
WHERE id IN (
    SELECT id FROM webhook_outbox
    WHERE next_attempt_at <= %(now)s
      AND (origin IS NULL OR origin <> ALL(%(busy)s::text[]))
    ORDER BY next_attempt_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: outbox_fill
UPDATE webhook_outbox SET origin = %(origin)s, body = %(body)s
WHERE id = %(id)s AND claim = %(claim)s;

-- name: outbox_reschedule
-- A failed attempt (or a claim given back unsent): due again at next_attempt_at.
UPDATE webhook_outbox
SET claim = NULL, attempts = %(attempts)s, next_attempt_at = %(next_attempt_at)s,
    last_error = %(error)s
WHERE id = %(id)s AND claim = %(claim)s;

-- name: outbox_delete
DELETE FROM webhook_outbox WHERE id = %(id)s AND claim = %(claim)s;

-- name: outbox_pending
SELECT count(*) AS count FROM webhook_outbox;
