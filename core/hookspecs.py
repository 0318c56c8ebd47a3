"""Every taskframe hook, in one place. Hook names start with ``taskframe_``.

Groups: registration and configuration (called at start), submission checks
(server, on the request), lifecycle (server, after the change is committed,
from a background thread), webhook delivery (server) and execution (worker,
around each run).

A hook implementation that raises during the lifecycle or execution hooks is
logged with the plugin's name and never changes the job.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

import pluggy

from taskframe.core.executor import ExecutorContext, ExecutorRegistry
from taskframe.core.webhooks import WebhookSender

hookspec = pluggy.HookspecMarker("taskframe")

Role = Literal["server", "worker"]

# -- registration and configuration ----------------------------------------------


@hookspec
def taskframe_register_executors(register: ExecutorRegistry) -> None:
    """Contribute job types.

    :param register: call ``register.add(executor)`` (or ``register(executor)``)
        once per :class:`~taskframe.core.Executor` the plugin provides. A
        rejected executor (a name not matching ``[a-z][a-z0-9_.-]*``, a schema
        that is not a marshmallow ``Schema`` instance, a run that is not
        callable, a name taken by a built-in or an earlier plugin) is reported under
        this plugin's name; its other executors still load.
    """


@hookspec
def taskframe_add_options(parser: argparse.ArgumentParser, role: Role) -> None:
    """Add command-line options to ``taskframe-server`` or ``taskframe-worker``.

    Options become attributes of the namespace executors see as
    ``context.options``. Add them with :func:`taskframe.core.add_option`,
    which gives each a help text and a ``TASKFRAME_*`` environment default.

    :param parser: the command's argument parser (add an argument group).
    :param role: ``"server"`` or ``"worker"``; a standalone server calls the
        hook for both roles.
    """


@hookspec
def taskframe_configure(
    options: argparse.Namespace, role: Role, manager: pluggy.PluginManager
) -> None:
    """Called once the command line is parsed, before serving or leasing.

    A plugin may register further hook objects here (``manager.register``),
    for example lifecycle hooks that are only wanted when an option is set:
    hooks that no plugin implements cost nothing.

    :param options: the parsed options (the same namespace as ``context.options``).
    :param role: ``"server"`` or ``"worker"``; a standalone server calls the
        hook for both roles.
    :param manager: the pluggy plugin manager.
    """


# -- submission (server, on the request) -----------------------------------------


@hookspec
def taskframe_validate_job(job: dict[str, Any]) -> dict[str, list[str]] | None:
    """Check a submitted job beyond its payload schema; called on every submission.

    Return the problems by field name (the client gets a 422 naming them),
    or None. Keep it fast: it runs on the request.

    :param job: the job as loaded from the request (``type``, ``payload``,
        ``priority``, ``notify_url``, ...), its payload not yet loaded by the
        executor's schema.
    """


# -- lifecycle (server, after commit, from a background thread) -------------------


@hookspec
def taskframe_job_submitted(job: dict[str, Any]) -> None:
    """A new job was committed (a re-sent idempotent submission is not new).

    :param job: the job as ``GET /jobs/{id}`` shows it.
    """


@hookspec
def taskframe_attempt_finished(job: dict[str, Any], attempt: dict[str, Any]) -> None:
    """An attempt ended (succeeded, failed, timed out, lease expired, released, cancelled).

    :param job: the job after the attempt, as ``GET /jobs/{id}`` shows it
        (``queued`` again when it will be retried).
    :param attempt: the attempt as ``GET /jobs/{id}/attempts`` shows it.
    """


@hookspec
def taskframe_job_finished(job: dict[str, Any]) -> None:
    """A job reached a final state: ``succeeded``, ``failed`` or ``cancelled``.

    Called once per time the job finishes (again after a retry that finishes
    it again). A server that stops before the background thread got to the
    event does not call it.

    :param job: the job as ``GET /jobs/{id}`` shows it.
    """


# -- webhook delivery (server) -----------------------------------------------------


@hookspec(firstresult=True)
def taskframe_webhook_sender() -> WebhookSender | None:
    """The sender of ``notify_url`` webhooks, or None; the first answer counts.

    A job with a ``notify_url`` that finishes gets a row in the server's
    outbox, a table written in the transaction that finished it. Every server
    claims due rows (servers sharing a database take disjoint ones), and calls
    ``sender.deliver(delivery)`` on its own threads, at most
    ``sender.settings.per_origin`` at once per receiver; it retries with
    backoff and drops a delivery (logged and counted) past
    ``settings.attempts`` or ``settings.max_age``. Delivery is at least once,
    across restarts. The built-in ``webhook`` plugin answers when the server
    has a ``--webhook-secret``. See :mod:`taskframe.core.webhooks`.
    """


# -- execution (worker, in the job's thread) -------------------------------------


@hookspec
def taskframe_before_run(job: dict[str, Any], context: ExecutorContext) -> None:
    """Called in the job's thread just before its executor runs (tracing, set-up).

    :param job: the leased job (``id``, ``type``, ``payload``, ``attempts``, ...).
    :param context: the context the executor receives.
    """


@hookspec
def taskframe_after_run(
    job: dict[str, Any], context: ExecutorContext, outcome: dict[str, Any]
) -> None:
    """Called in the job's thread after its executor returned or raised (tear-down).

    Called for every plugin whose ``taskframe_before_run`` did not raise.

    :param job: the leased job.
    :param context: the context the executor received.
    :param outcome: ``{"status", "result", "error", "retryable"}`` as the
        worker will report it.
    """
