"""``taskframe``: submit, inspect and steer jobs from a terminal or a script.

Tables for people, ``--json`` for scripts. Exit codes: 0 done; 1 the API
refused the request, no server answered, or the job waited for failed or was
cancelled; 2 bad usage (an option, a payload that is not JSON).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, TextIO

from taskframe.client import render
from taskframe.client.api import DEFAULT_URL, Client
from taskframe.client.errors import TaskframeError, Unavailable, ValidationError, WaitTimeout
from taskframe.client.models import Job
from taskframe.client.transport import CertificateFileError, read_token_file
from taskframe.core.options import add_option, add_version_option, duration, env_name
from taskframe.core.schemas import JobFilterSchema

#: How often the progress line of ``--wait`` is refreshed on a terminal
#: (workers send a job's progress every half second).
TTY_REFRESH = 0.5
#: How often ``log --follow`` asks for new lines (workers send them with each heartbeat).
LOG_FOLLOW_EVERY = 1.0
#: Characters of the printed log looked for when the server's log window moved on.
LOG_OVERLAP = 200
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a process the pipe ended


class UsageError(Exception):
    """Bad usage found after parsing (exit code 2)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskframe", description="Submit, inspect and steer taskframe jobs."
    )
    add_version_option(parser)
    add_option(parser, "--url", default=DEFAULT_URL, help="server URL (several: comma-separated)")
    add_option(parser, "--token", help="bearer token (a client or admin token)")
    add_option(parser, "--token-file", help="file holding the token, instead of --token")
    add_option(parser, "--ca-cert", help="CA certificate (PEM) for https with a private CA")
    add_option(parser, "--json", flag_only=True, help="print JSON instead of tables")
    # The same flags after the command (``taskframe list --json``), keeping the above if absent.
    common = argparse.ArgumentParser(add_help=False)
    for flag in ("--url", "--token", "--token-file", "--ca-cert"):
        common.add_argument(flag, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON out")

    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    submit = command("submit", "submit a job")
    submit.add_argument("type", help="job type (see `taskframe types`)")
    submit.add_argument(
        "--payload", default="{}", help="the payload: JSON, or @FILE holding JSON (@- for stdin)"
    )
    submit.add_argument("--priority", type=int, help="1 (lowest) to 10 (highest), default 5")
    submit.add_argument(
        "--delay", type=duration, help="how long before the job may run: 90, 30s, 5m, 2h, 1d"
    )
    submit.add_argument(
        "--timeout", type=duration, help="limit of one attempt: 90, 30s, 5m, 2h (0: none)"
    )
    submit.add_argument("--max-attempts", type=int, help="attempts before it fails (default 3)")
    submit.add_argument("--key", help="idempotency key: the same key again returns the same job")
    submit.add_argument("--wait", action="store_true", help="wait for the job and print its result")
    submit.add_argument(
        "--wait-timeout",
        type=duration,
        help="with --wait: give up after this long (exit 1): 30s, 5m, 2h",
    )
    submit.add_argument("--queue", help="the queue it waits in (default: default)")
    submit.add_argument(
        "--depends-on", type=_ids, help="comma-separated ids of jobs that must succeed first"
    )
    submit.add_argument(
        "--on-dependency-failure",
        choices=("cancel", "run"),
        help="when a dependency fails: cancel this job (default) or run it anyway",
    )

    command("get", "show a job").add_argument("id", type=int)
    wait = command("wait", "wait until a job finished; exit 1 if it failed or was cancelled")
    wait.add_argument("id", type=int)
    wait.add_argument("--timeout", type=duration, help="give up after this long (exit 1): 30s, 5m")

    listing = command("list", "list jobs, newest first (or --sort, --asc)")
    listing.add_argument("--status", help="only jobs in this status")
    listing.add_argument("--type", help="only jobs of this type")
    listing.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    listing.add_argument("--queue", help="only jobs in this queue")
    listing.add_argument("--key", help="the job with this idempotency key")
    listing.add_argument(
        "--sort", choices=("id", "created", "priority", "finished"), help="order (default id)"
    )
    listing.add_argument("--asc", action="store_true", help="ascending (default descending)")

    for name, help in (
        ("cancel", "cancel a job, or every job a filter matches"),
        ("retry", "queue a failed or cancelled job again, or every one a filter matches"),
    ):
        bulk = command(name, help)
        bulk.add_argument("id", type=int, nargs="?", help="one job (or give filters instead)")
        add_bulk_filters(bulk)
    command("attempts", "show a job's attempts (their logs and tracebacks)").add_argument(
        "id", type=int
    )
    log = command("log", "print a job's log: the running attempt's so far, else the last one's")
    log.add_argument("id", type=int)
    log.add_argument(
        "--follow", "-f", action="store_true", help="print new lines until the job finished"
    )
    command("types", "list the installed job types")
    command("stats", "counts of jobs by status and type")
    command("workers", "list the workers seen recently")

    command("queues", "list the queues with their jobs counted by status")
    command("pause-queue", "pause a queue: it accepts jobs, leases none").add_argument("name")
    command("resume-queue", "resume a paused queue").add_argument("name")
    command("limits", "list the concurrency limits")
    set_limit = command("set-limit", "run at most N jobs of a type or queue at once")
    set_limit.add_argument("kind", choices=("type", "queue"))
    set_limit.add_argument("name")
    set_limit.add_argument("max_running", type=int, metavar="N")
    delete_limit = command("delete-limit", "remove a concurrency limit")
    delete_limit.add_argument("kind", choices=("type", "queue"))
    delete_limit.add_argument("name")

    command("schedules", "list the cron schedules")
    command("schedule", "show a schedule and its next fire times").add_argument("name")
    create = command("create-schedule", "submit a job at every fire time of a cron expression")
    create.add_argument("name")
    create.add_argument("cron", help='5 fields, or 6 with seconds last: "30 2 * * *"')
    create.add_argument("type", help="job type")
    create.add_argument("--payload", default="{}", help="JSON, or @FILE holding JSON")
    create.add_argument("--timezone", help="IANA zone the cron is read in (default UTC)")
    create.add_argument("--misfire", choices=("latest", "skip"), help="after downtime")
    create.add_argument("--queue", help="the jobs' queue")
    create.add_argument("--priority", type=int, help="the jobs' priority")
    command("delete-schedule", "delete a schedule").add_argument("name")
    command("pause-schedule", "stop a schedule firing").add_argument("name")
    command("resume-schedule", "resume from the next fire time").add_argument("name")
    return parser


#: The filters of ``taskframe retry`` and ``cancel``: the bulk endpoints' own.
BULK_FILTERS = tuple(JobFilterSchema().fields)


def add_bulk_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--status", help="only jobs in this status")
    parser.add_argument("--type", help="only jobs of this type")
    parser.add_argument("--queue", help="only jobs in this queue")
    parser.add_argument("--key", help="the job with this idempotency key")
    when = "a time (2026-12-01T08:00Z) or how long ago (30m, 2h, 1d)"
    for field in ("created", "finished"):
        parser.add_argument(f"--{field}-after", type=point_in_time, help=f"{field} since {when}")
        parser.add_argument(f"--{field}-before", type=point_in_time, help=f"{field} before {when}")
    parser.add_argument("--limit", type=int, help="at most this many jobs, oldest first")
    parser.add_argument("--dry-run", action="store_true", help="only count the jobs")
    parser.add_argument("--yes", action="store_true", help="do not ask to confirm")


def point_in_time(text: str) -> str:
    """An ISO 8601 time (UTC when it names no zone), or a duration meaning that long ago."""
    try:
        ago = duration(text)
    except argparse.ArgumentTypeError:
        pass
    else:
        return (datetime.now(timezone.utc) - timedelta(seconds=ago)).isoformat()
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time (2026-12-01T08:00Z) nor a duration (30m): {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.isoformat()


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not comma-separated job ids: {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except (ValueError, argparse.ArgumentTypeError) as exc:  # a bad TASKFRAME_* value
        print(f"taskframe: error: {exc} (in a TASKFRAME_* variable)", file=sys.stderr)
        return EXIT_USAGE
    options = parser.parse_args(argv)
    try:
        client = make_client(options)
        with client:
            code = COMMANDS[options.command](client, options)
            sys.stdout.flush()  # a reader gone shows here, not as a traceback at exit
            return code
    except UsageError as exc:
        print(f"taskframe: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TaskframeError as exc:
        print(f"error: {error_line(exc, options.url)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        return quiet_broken_pipe()


def quiet_broken_pipe() -> int:
    """The reader went away (``taskframe list | head``): stop without a traceback.

    Python would report the pipe again when it flushes stdout at exit: point
    stdout at /dev/null first. The exit status is a shell's for SIGPIPE.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_BROKEN_PIPE


def make_client(options: argparse.Namespace) -> Client:
    token = options.token
    if token and options.token_file:
        # A flag overrides the environment: only two flags (or two variables) clash.
        token_from_env = token == os.environ.get(env_name("--token"))
        file_from_env = options.token_file == os.environ.get(env_name("--token-file"))
        if token_from_env == file_from_env:
            where = (
                "TASKFRAME_TOKEN or TASKFRAME_TOKEN_FILE"
                if token_from_env
                else "--token or --token-file"
            )
            raise UsageError(f"give {where}, not both")
        if not file_from_env:
            token = None
        else:
            options.token_file = None
    if options.token_file:
        try:
            token = read_token_file(options.token_file)
        except ValueError as exc:
            raise UsageError(f"--token-file: {exc}") from None
    if options.ca_cert and not os.path.isfile(options.ca_cert):
        raise UsageError(f"--ca-cert: {options.ca_cert} is not a file")
    try:
        return Client(options.url, token=token, ca_cert=options.ca_cert)
    except CertificateFileError as exc:
        raise UsageError(f"--ca-cert: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"--url: {exc}") from None


def error_line(exc: TaskframeError, url: str) -> str:
    """One line for an error: the fields at fault, the server's words, or the URL unreached."""
    if isinstance(exc, ValidationError) and exc.errors:
        return "; ".join(f"{name}: {message}" for name, message in exc.field_messages())
    if isinstance(exc, Unavailable) and exc.status is None:
        return f"cannot reach {url}: {exc.description or exc}"
    if exc.title:
        return f"{exc.title}: {exc.description}" if exc.description else exc.title
    return str(exc)


# -- commands ---------------------------------------------------------------------


def cmd_submit(client: Client, options: argparse.Namespace) -> int:
    payload = read_payload(options.payload)
    if options.wait_timeout is not None and not options.wait:
        raise UsageError("--wait-timeout goes with --wait")
    began = time.monotonic()
    job = client.submit(
        options.type,
        payload,
        priority=options.priority,
        delay=options.delay,
        timeout=options.timeout,
        max_attempts=options.max_attempts,
        idempotency_key=options.key,
        queue=options.queue,
        depends_on=options.depends_on,
        on_dependency_failure=options.on_dependency_failure,
        # One request for a short job: the server answers once it finished
        # (a long one shows its progress after this).
        wait=TTY_REFRESH if options.wait else None,
    )
    if not options.wait:
        if options.json:
            emit_json(job.raw)
        else:
            print(f"job {job.id} submitted ({job.type}, {job.status})")
        return EXIT_OK
    if not options.json:
        print(f"job {job.id} submitted ({job.type})", file=sys.stderr)
    if not job.finished:
        warn_if_unserved(client, job)
        left = None
        if options.wait_timeout is not None:
            left = max(0.0, options.wait_timeout - (time.monotonic() - began))
        return wait_and_report(client, job.id, options, timeout=left)
    progress = Progress(job.id, sys.stderr, began)
    progress.update(job)
    progress.end()
    return report(job, options)


def warn_if_unserved(client: Client, job: Job) -> None:
    """Say at once when no live worker runs the job's type: else ``--wait`` waits in
    silence for a worker that may never come."""
    try:
        workers = client.workers()
    except TaskframeError:
        return  # an older server, or no right to see workers: nothing to say
    if not any(worker.alive and job.type in worker.types for worker in workers):
        print(
            f"warning: no live worker runs {job.type} jobs: job {job.id} waits until one "
            "starts (--wait-timeout gives up after a while)",
            file=sys.stderr,
        )


def cmd_get(client: Client, options: argparse.Namespace) -> int:
    job = client.get(options.id)
    show(options, job.raw, lambda: render.job_block(job))
    return EXIT_OK


def cmd_wait(client: Client, options: argparse.Namespace) -> int:
    return wait_and_report(client, options.id, options, timeout=options.timeout)


def cmd_list(client: Client, options: argparse.Namespace) -> int:
    if options.limit < 1:
        raise UsageError("--limit must be at least 1")
    jobs = list(
        client.list(
            options.status,
            options.type,
            limit=options.limit,
            queue=options.queue,
            key=options.key,
            sort=options.sort,
            order="asc" if options.asc else None,
        )
    )
    show(options, [j.raw for j in jobs], lambda: render.jobs_table(jobs))
    return EXIT_OK


def cmd_cancel(client: Client, options: argparse.Namespace) -> int:
    if options.id is None:
        return bulk_action(client, options, "cancel")
    single_only(options)
    job = client.cancel(options.id)
    wording = "cancel requested (it is running)" if job.status == "running" else job.status
    show(options, job.raw, lambda: f"job {job.id}: {wording}")
    return EXIT_OK


def cmd_retry(client: Client, options: argparse.Namespace) -> int:
    if options.id is None:
        return bulk_action(client, options, "retry")
    single_only(options)
    job = client.retry(options.id)
    show(options, job.raw, lambda: f"job {job.id}: {job.status}")
    return EXIT_OK


def single_only(options: argparse.Namespace) -> None:
    given = [name for name in BULK_FILTERS if getattr(options, name) is not None]
    if given or options.limit is not None or options.dry_run:
        flag = "--" + (given[0] if given else "limit").replace("_", "-")
        raise UsageError(f"give a job id or filters ({flag}), not both")


def bulk_action(client: Client, options: argparse.Namespace, action: str) -> int:
    """``retry``/``cancel`` with filters: count first, confirm, then act on them all."""
    filters = {name: getattr(options, name) for name in BULK_FILTERS}
    if not any(value is not None for value in filters.values()) and not options.yes:
        raise UsageError("give a job id, or filters (every job: --yes without filters)")
    if options.limit is not None and options.limit < 1:
        raise UsageError("--limit must be at least 1")
    counted = client.bulk(action, dry_run=True, limit=options.limit, **filters)
    if options.dry_run or not counted["matched"]:
        show(options, counted, lambda: f"{counted['matched']} job(s) to {action}")
        return EXIT_OK
    if not options.yes:
        question = f"{action} {counted['matched']} job(s)? [y/N] "
        if not sys.stdin.isatty():
            print(
                f"{question.split('?')[0]}: not done, add --yes (not a terminal)", file=sys.stderr
            )
            return EXIT_USAGE
        if input(question).strip().lower() not in ("y", "yes"):
            print("nothing done", file=sys.stderr)
            return EXIT_ERROR
    done = client.bulk(action, limit=options.limit, **filters)
    verb = "cancelled" if action == "cancel" else "queued again"
    lines = [f"{done['changed']} job(s) {verb}"]
    if done.get("cancel_requested"):
        lines.append(f"({done['cancel_requested']} running: their workers were asked to stop)")
    if done.get("skipped"):
        lines.append(f"{done['skipped']} skipped (changed meanwhile)")
    show(options, done, lambda: " ".join(lines))
    return EXIT_OK


def cmd_attempts(client: Client, options: argparse.Namespace) -> int:
    attempts = client.attempts(options.id)
    show(options, [a.raw for a in attempts], lambda: render.attempts_text(attempts))
    return EXIT_OK


def cmd_log(client: Client, options: argparse.Namespace) -> int:
    """The job's log: the running attempt's as its heartbeats brought it, else the last
    finished attempt's. ``--follow`` prints what is new every second (like ``tail -f``)
    until the job finished, then exits as ``wait`` does."""
    shown = ""
    while True:
        job = client.get(options.id)
        running = None if job.finished else client.running_attempt(options.id)
        if running is not None:
            text = running.log or ""
        else:
            attempts = client.attempts(options.id)
            text = (attempts[-1].log or "") if attempts else ""
        sys.stdout.write(log_news(shown, text))
        sys.stdout.flush()
        shown = text
        if not options.follow or job.finished:
            return EXIT_OK if not options.follow or job.succeeded else EXIT_ERROR
        time.sleep(LOG_FOLLOW_EVERY)


def log_news(shown: str, text: str) -> str:
    """What of ``text`` was not printed yet. Mostly it goes on from ``shown``; when the
    server's 64 KiB window moved on (or a new attempt began), it goes on from the end
    of ``shown`` found in ``text``, else from its start."""
    if text.startswith(shown):
        return text[len(shown) :]
    tail = shown[-LOG_OVERLAP:]
    found = text.rfind(tail) if tail else -1
    return text[found + len(tail) :] if found >= 0 else text


def cmd_types(client: Client, options: argparse.Namespace) -> int:
    types = client.job_types()
    show(options, [t.raw for t in types], lambda: render.types_table(types))
    return EXIT_OK


def cmd_stats(client: Client, options: argparse.Namespace) -> int:
    stats = client.stats()
    show(options, stats.raw, lambda: render.stats_text(stats))
    return EXIT_OK


def cmd_workers(client: Client, options: argparse.Namespace) -> int:
    workers = client.workers()
    show(options, [w.raw for w in workers], lambda: render.workers_table(workers))
    return EXIT_OK


def cmd_queues(client: Client, options: argparse.Namespace) -> int:
    queues = client.queues()
    show(options, [q.raw for q in queues], lambda: render.queues_table(queues))
    return EXIT_OK


def cmd_pause_queue(client: Client, options: argparse.Namespace) -> int:
    queue = client.pause_queue(options.name)
    show(options, queue.raw, lambda: f"queue {queue.name} paused")
    return EXIT_OK


def cmd_resume_queue(client: Client, options: argparse.Namespace) -> int:
    queue = client.resume_queue(options.name)
    show(options, queue.raw, lambda: f"queue {queue.name} resumed")
    return EXIT_OK


def cmd_limits(client: Client, options: argparse.Namespace) -> int:
    limits = client.limits()
    rows = ((x.kind, x.name, x.max_running) for x in limits)
    show(options, [x.raw for x in limits], lambda: render.table(("KIND", "NAME", "MAX"), rows))
    return EXIT_OK


def cmd_set_limit(client: Client, options: argparse.Namespace) -> int:
    limit = client.set_limit(options.kind, options.name, options.max_running)
    show(options, limit.raw, lambda: f"{limit.kind} {limit.name}: at most {limit.max_running}")
    return EXIT_OK


def cmd_delete_limit(client: Client, options: argparse.Namespace) -> int:
    client.delete_limit(options.kind, options.name)
    show(options, {}, lambda: f"{options.kind} {options.name}: no limit")
    return EXIT_OK


def cmd_schedules(client: Client, options: argparse.Namespace) -> int:
    schedules = client.schedules()
    show(options, [x.raw for x in schedules], lambda: render.schedules_table(schedules))
    return EXIT_OK


def cmd_schedule(client: Client, options: argparse.Namespace) -> int:
    schedule = client.schedule(options.name)
    show(options, schedule.raw, lambda: render.schedule_block(schedule))
    return EXIT_OK


def cmd_create_schedule(client: Client, options: argparse.Namespace) -> int:
    job: dict[str, Any] = {"type": options.type, "payload": read_payload(options.payload)}
    for name in ("queue", "priority"):
        if getattr(options, name) is not None:
            job[name] = getattr(options, name)
    schedule = client.create_schedule(
        options.name, options.cron, job, timezone=options.timezone, misfire=options.misfire
    )
    show(options, schedule.raw, lambda: render.schedule_block(schedule))
    return EXIT_OK


def cmd_delete_schedule(client: Client, options: argparse.Namespace) -> int:
    client.delete_schedule(options.name)
    show(options, {}, lambda: f"schedule {options.name} deleted")
    return EXIT_OK


def cmd_pause_schedule(client: Client, options: argparse.Namespace) -> int:
    schedule = client.pause_schedule(options.name)
    show(options, schedule.raw, lambda: f"schedule {schedule.name} paused")
    return EXIT_OK


def cmd_resume_schedule(client: Client, options: argparse.Namespace) -> int:
    schedule = client.resume_schedule(options.name)
    show(options, schedule.raw, lambda: render.schedule_block(schedule))
    return EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "get": cmd_get,
    "wait": cmd_wait,
    "list": cmd_list,
    "cancel": cmd_cancel,
    "retry": cmd_retry,
    "attempts": cmd_attempts,
    "log": cmd_log,
    "types": cmd_types,
    "stats": cmd_stats,
    "workers": cmd_workers,
    "queues": cmd_queues,
    "pause-queue": cmd_pause_queue,
    "resume-queue": cmd_resume_queue,
    "limits": cmd_limits,
    "set-limit": cmd_set_limit,
    "delete-limit": cmd_delete_limit,
    "schedules": cmd_schedules,
    "schedule": cmd_schedule,
    "create-schedule": cmd_create_schedule,
    "delete-schedule": cmd_delete_schedule,
    "pause-schedule": cmd_pause_schedule,
    "resume-schedule": cmd_resume_schedule,
}


# -- helpers ----------------------------------------------------------------------


def read_payload(text: str) -> dict[str, Any]:
    """``--payload``: JSON text, ``@file`` or ``@-`` (stdin); it must be a JSON object."""
    source = "the text given"
    if text.startswith("@"):
        source = text[1:]
        try:
            if source == "-":
                text = sys.stdin.read()
            else:
                with open(source, encoding="utf-8") as file:
                    text = file.read()
        except OSError as exc:
            raise UsageError(f"--payload: cannot read {source}: {exc.strerror or exc}") from None
    try:
        payload = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError as exc:
        raise UsageError(f"--payload: {source} is not valid JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise UsageError(f'--payload: {source} must hold a JSON object, like {{"a": 1}}')
    return payload


def _not_json(constant: str) -> float:
    """Python reads NaN and Infinity, JSON has no such values (nor has the API)."""
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"{text} is out of range")
    return value


def show(options: argparse.Namespace, data: Any, text: Callable[[], str]) -> None:
    if options.json:
        emit_json(data)
    else:
        print(text())


def emit_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def wait_and_report(
    client: Client, job_id: int, options: argparse.Namespace, timeout: float | None
) -> int:
    """Wait for the job with progress on stderr; print its result; 1 unless it succeeded."""
    progress = Progress(job_id, sys.stderr)
    try:
        job = client.wait(
            job_id,
            timeout=timeout,
            poll=TTY_REFRESH if progress.tty else 60.0,
            on_update=progress.update,
        )
    except WaitTimeout:
        progress.end()
        raise
    progress.end()
    return report(job, options)


def report(job: Job, options: argparse.Namespace) -> int:
    """Print a finished job's result (its error on stderr); 1 unless it succeeded."""
    if options.json:
        emit_json(job.raw)
    elif job.succeeded:
        print(render.pretty(job.result))
    else:
        reason = f": {job.error}" if job.error else ""
        print(f"job {job.id} {job.status} after {job.attempts} attempt(s){reason}", file=sys.stderr)
        if job.status == "failed":
            print(f"(its tracebacks: taskframe attempts {job.id})", file=sys.stderr)
    return EXIT_OK if job.succeeded else EXIT_ERROR


class Progress:
    """Status and elapsed time of a waited-for job, on stderr.

    On a terminal one line is rewritten in place every second; otherwise a
    plain line is written at each change of status (logs stay readable).
    """

    def __init__(self, job_id: int, stream: TextIO, began: float | None = None) -> None:
        self.job_id = job_id
        self.stream = stream
        self.tty = stream.isatty()
        self.began = time.monotonic() if began is None else began
        self.last_status: str | None = None
        self.width = 0

    def update(self, job: Job) -> None:
        elapsed = time.monotonic() - self.began
        line = f"job {job.id}: {job.status} ({elapsed:.1f} s, attempt {job.attempts})"
        bar = render.progress_text(job.progress) if job.status == "running" else None
        if job.status == "succeeded" and job.progress:
            bar = render.progress_bar(1.0)  # the last report may predate the end
        if self.tty and bar:  # what the job reported with current_job().progress()
            line = f"job {job.id}: {job.status} {bar} ({elapsed:.1f} s, attempt {job.attempts})"
        if self.tty:
            # One screen line, or \r could not rewrite it (a long progress message).
            line = line[: max(20, shutil.get_terminal_size().columns - 1)]
            self.stream.write("\r" + line.ljust(self.width))
            self.width = len(line)
        elif job.status != self.last_status:
            self.stream.write(line + "\n")
        self.last_status = job.status
        self.stream.flush()

    def end(self) -> None:
        if self.tty and self.width:
            self.stream.write("\n")
            self.stream.flush()


if __name__ == "__main__":
    sys.exit(main())
