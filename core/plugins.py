"""Build the plugin manager, check every plugin, and collect the executors they register.

Nothing a plugin gets wrong passes silently: each problem is recorded under
the plugin's name in ``PluginSet.failures`` (shown by ``GET /health``,
``GET /plugins``, the start banner and ``taskframe-server --list-plugins``).
"""

from __future__ import annotations

import argparse
import difflib
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import marshmallow
import pluggy

from taskframe.core import hookspecs, schemas
from taskframe.core.executor import DEFAULT_FIELDS, Executor, ExecutorRegistry
from taskframe.core.options import add_option
from taskframe.core.task_modules import (
    TasksModuleError as TasksModuleError,
)
from taskframe.core.task_modules import (
    entry_point_plugins,
    module_names,
    tasks_plugins,
)

ENTRY_POINT_GROUP = "taskframe"
DISABLE_VARIABLE = "TASKFRAME_DISABLE_PLUGINS"
#: What a job type may be called (the API's ``type`` field allows 200 characters).
NAME_PATTERN = re.compile(r"[a-z][a-z0-9_.-]{0,199}")
HOOK_NAMES = frozenset(name for name in dir(hookspecs) if name.startswith("taskframe_"))
log = logging.getLogger("taskframe.plugins")


@dataclass
class PluginSet:
    """The loaded plugins: a plugin manager, the executors by name, the failures."""

    manager: pluggy.PluginManager
    executors: dict[str, Executor] = field(default_factory=dict)
    #: Plugin name -> what went wrong (several problems joined by "; ").
    failures: dict[str, str] = field(default_factory=dict)
    #: Objects a plugin registered itself at configure time, by name: that plugin's name.
    internal: dict[str, str] = field(default_factory=dict)
    #: Job type -> the name of the plugin that registered it.
    owners: dict[str, str] = field(default_factory=dict)
    #: Plugin name -> (distribution, version), for plugins found by entry point.
    distributions: dict[str, tuple[str, str]] = field(default_factory=dict)
    disabled: list[str] = field(default_factory=list)
    #: Hook name -> implemented? (asked per job; cleared when plugins register more).
    _implemented: dict[str, bool] = field(default_factory=dict, repr=False)

    def names(self) -> list[str]:
        return sorted(self.executors)

    def implements(self, hook: str) -> bool:
        """Whether any loaded plugin implements ``hook`` (unimplemented hooks cost nothing)."""
        known = self._implemented.get(hook)
        if known is None:
            known = self._implemented[hook] = bool(getattr(self.manager.hook, hook).get_hookimpls())
        return known

    def register(self, plugin: object, name: str) -> None:
        """Register a hook object after loading (the server's own listeners)."""
        self.manager.register(plugin, name=name)
        self._implemented.clear()

    def call_each(self, hook: str, skip: Iterable[str] = (), **kwargs: Any) -> set[str]:
        """Call every implementation of ``hook`` except the plugins in ``skip``.

        One that raises is logged with its plugin's name; the others still run.
        Returns the names of the plugins that raised.
        """
        raised = set()
        for impl in getattr(self.manager.hook, hook).get_hookimpls():
            if impl.plugin_name in skip:
                continue
            try:
                impl.function(*[kwargs[name] for name in impl.argnames])
            except Exception:
                log.exception("plugin %r: %s raised (ignored)", impl.plugin_name, hook)
                raised.add(impl.plugin_name)
        return raised

    def job_check(self) -> Callable[[dict[str, Any]], dict[str, Any] | None] | None:
        """The plugins' ``taskframe_validate_job`` as one function, or None when none has it.

        A check that raises is logged by plugin name and passes the job.
        """
        if not self.implements("taskframe_validate_job"):
            return None
        # Called for every submitted job: look the implementations up once.
        calls = [
            (impl.function, bool(impl.argnames), impl.plugin_name)
            for impl in self.manager.hook.taskframe_validate_job.get_hookimpls()
        ]

        def check(job: dict[str, Any]) -> dict[str, Any] | None:
            problems: dict[str, Any] | None = None
            for function, takes_job, plugin in calls:
                try:
                    found = function(job) if takes_job else function()
                except Exception:
                    log.exception("plugin %r: taskframe_validate_job raised", plugin)
                    continue
                if found:
                    problems = {**(problems or {}), **dict(found)}  # type: ignore[call-overload]
            return problems

        return check

    def configure(self, options: Any, role: str) -> None:
        """Call ``taskframe_configure``; a plugin whose configuration raises is a failure."""
        for impl in self.manager.hook.taskframe_configure.get_hookimpls():
            arguments = {"options": options, "role": role, "manager": self.manager}
            before = {name for name, _ in self.manager.list_name_plugin()}
            try:
                impl.function(*[arguments[name] for name in impl.argnames])
            except Exception as exc:
                self.fail(impl.plugin_name, exc)
            # Objects it registered ("webhook.notifier") are part of it, not plugins.
            for name, _ in self.manager.list_name_plugin():
                if name not in before:
                    self.internal[name] = impl.plugin_name
        self._implemented.clear()  # configure may have registered hook objects

    def fail(self, plugin: str, problem: Exception | str) -> None:
        """Record a problem of ``plugin`` (logged at DEBUG: the commands report it once,
        the server in its start line, the worker when it starts)."""
        if isinstance(problem, Exception):
            problem = f"{type(problem).__name__}: {problem}"
        previous = self.failures.get(plugin)
        self.failures[plugin] = f"{previous}; {problem}" if previous else problem
        log.debug("plugin %r: %s", plugin, problem)

    def describe(self) -> dict[str, Any]:
        """``GET /plugins`` and ``--list-plugins``: loaded plugins, failures, disabled names."""
        loaded = []
        hooks_of: dict[str, set[str]] = {}  # by plugin, with its internal objects' hooks
        for name, plugin in self.manager.list_name_plugin():
            if plugin is not None:
                callers = self.manager.get_hookcallers(plugin) or []
                hooks_of.setdefault(self.internal.get(name, name), set()).update(
                    caller.name for caller in callers
                )
        for name, plugin in sorted(self.manager.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None or name in self.internal:  # blocked; part of another plugin
                continue
            distribution, version = self.distributions.get(name, (None, None))
            hooks = sorted(hooks_of.get(name, ()))
            loaded.append(
                {
                    "name": name,
                    "distribution": distribution,
                    "version": version,
                    "hooks": hooks,
                    "job_types": sorted(t for t, owner in self.owners.items() if owner == name),
                }
            )
        failed = [{"name": name, "error": error} for name, error in sorted(self.failures.items())]
        return {"plugins": loaded, "failures": failed, "disabled": sorted(self.disabled)}

    def summary(self) -> str:
        """``sleep (taskframe 0.1.0), shout (taskframe-shout 1.0)`` for the start banner."""
        parts = []
        for plugin in self.describe()["plugins"]:
            origin = f" ({plugin['distribution']} {plugin['version']})" if plugin["version"] else ""
            parts.append(plugin["name"] + origin)
        return ", ".join(parts) or "none"

    def describe_text(self) -> str:
        """What ``--list-plugins`` prints."""
        described = self.describe()
        lines = ["plugins:"]
        for plugin in described["plugins"]:
            origin = plugin["distribution"] or "(not from an entry point)"
            if plugin["version"]:
                origin += f" {plugin['version']}"
            lines.append(f"  {plugin['name']}  {origin}")
            lines.append(f"      hooks: {', '.join(plugin['hooks']) or 'none'}")
            if plugin["job_types"]:
                lines.append(f"      job types: {', '.join(plugin['job_types'])}")
        if described["failures"]:
            lines.append("failed:")
            lines += [f"  {item['name']}: {item['error']}" for item in described["failures"]]
        if described["disabled"]:
            lines.append(f"disabled: {', '.join(described['disabled'])}")
        return "\n".join(lines)


def disabled_plugins(text: str | None = None) -> list[str]:
    """Plugin names from ``"a, b"`` (default: the ``TASKFRAME_DISABLE_PLUGINS`` variable)."""
    if text is None:
        text = os.environ.get(DISABLE_VARIABLE, "")
    return [name.strip() for name in text.split(",") if name.strip()]


def add_plugin_options(parser: argparse.ArgumentParser, listing: bool = True) -> None:
    group = parser.add_argument_group("plugins")
    add_option(
        group,
        "--disable-plugins",
        default="",
        help="comma-separated plugin (entry point) names not to load, not even import",
    )
    add_option(
        group,
        "--tasks",
        metavar="MODULE[,MODULE]",
        help="import these modules and run their @task functions as job types "
        "(the current directory is on the import path: --tasks tasks finds ./tasks.py)",
    )
    if listing:
        group.add_argument(
            "--list-plugins",
            action="store_true",
            help="list the plugins (distribution, version, hooks, job types) and "
            "those that failed to load, then exit",
        )


def early_disabled_plugins(argv: Sequence[str] | None) -> list[str]:
    """``--disable-plugins`` (or its variable), read before any plugin is imported."""
    early = argparse.ArgumentParser(add_help=False)
    add_plugin_options(early, listing=False)
    known, _ = early.parse_known_args(argv)
    return disabled_plugins(known.disable_plugins)


def early_tasks(argv: Sequence[str] | None) -> list[str]:
    """``--tasks`` (or ``TASKFRAME_TASKS``), read before the plugins load."""
    early = argparse.ArgumentParser(add_help=False)
    add_plugin_options(early, listing=False)
    known, _ = early.parse_known_args(argv)
    return module_names(known.tasks)


def load_plugins(
    extra_plugins: tuple[object, ...] = (),
    load_entry_points: bool = True,
    disabled: Iterable[str] | None = None,
    tasks: Iterable[str] = (),
) -> PluginSet:
    """Load the ``taskframe`` entry points (plus ``extra_plugins``) and their executors.

    ``tasks`` names modules of ``@task`` functions to load as plugins (see
    :mod:`taskframe.core.task_modules`); one that cannot be imported raises
    :class:`TasksModuleError`, whose message is one line naming it.

    Plugins named in ``disabled`` (default: ``TASKFRAME_DISABLE_PLUGINS``)
    are not even imported. A plugin that fails to import, implements an
    unknown or unmarked ``taskframe_*`` hook, or whose registration raises is
    not loaded; an executor it registers wrongly is left out. Each problem is
    recorded by plugin name in ``failures`` (see :meth:`PluginSet.fail`); the others still load.
    """
    manager = pluggy.PluginManager("taskframe")
    manager.add_hookspecs(hookspecs)
    plugins = PluginSet(manager)
    plugins.disabled = disabled_plugins() if disabled is None else list(disabled)
    for name in plugins.disabled:
        manager.set_blocked(name)
    if load_entry_points:
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if manager.has_plugin(entry_point.name) or manager.is_blocked(entry_point.name):
                continue
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin must not stop the others
                plugins.fail(entry_point.name, exc)
                continue
            # A module of @task functions is a plugin too (its tasks are registered).
            for one, name in entry_point_plugins(plugin, entry_point.name):
                if _register(plugins, one, name) and entry_point.dist is not None:
                    dist = entry_point.dist
                    plugins.distributions[name] = (dist.metadata["Name"], dist.version)
    extra_plugins = (*extra_plugins, *tasks_plugins(tasks))
    for plugin in extra_plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if not manager.is_blocked(name):
            _register(plugins, plugin, name)
    _collect_executors(plugins)
    return plugins


def _register(plugins: PluginSet, plugin: object, name: str) -> bool:
    """Register ``plugin`` if its hooks are right; otherwise record why not."""
    problems = _hook_problems(plugin)
    if problems:
        plugins.fail(name, "; ".join(problems))
        return False
    try:
        plugins.manager.register(plugin, name=name)
    except Exception as exc:  # pluggy's own checks: hook arguments that do not exist...
        plugins.fail(name, exc)
        return False
    try:
        plugins.manager.check_pending()
    except pluggy.PluginValidationError as exc:  # a marked hook no spec knows
        plugins.manager.unregister(plugin)
        plugins.fail(name, exc)
        return False
    return True


def _hook_problems(plugin: object) -> list[str]:
    """Misspelt hooks and hooks without ``@hookimpl``, which pluggy would ignore silently."""
    problems = []
    found = False
    for attribute in dir(plugin):
        if not attribute.startswith("taskframe_"):
            continue
        value = getattr(plugin, attribute, None)
        if not callable(value):
            continue
        if attribute not in HOOK_NAMES:
            close = difflib.get_close_matches(attribute, HOOK_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"unknown hook {attribute}{hint}")
        elif not hasattr(value, "taskframe_impl"):
            problems.append(f"{attribute} is not marked with @hookimpl")
        else:
            found = True
    if not found and not problems:
        problems.append("implements no taskframe_* hook")
    return problems


def _collect_executors(plugins: PluginSet) -> None:
    # A contested name goes to taskframe's own plugins first, then to the
    # plugins in the order they were loaded (sorted() is stable).
    def precedence(impl: Any) -> bool:
        return plugins.distributions.get(impl.plugin_name, ("",))[0] != "taskframe"

    impls = plugins.manager.hook.taskframe_register_executors.get_hookimpls()
    for impl in sorted(impls, key=precedence):
        plugin_name = impl.plugin_name

        def accept(executor: Executor, _plugin: str = plugin_name) -> None:
            problem = executor_problem(executor)
            if problem is None and executor.name in plugins.executors:
                holder = plugins.owners[executor.name]
                problem = f"job type {executor.name!r} is already registered by plugin {holder!r}"
            if problem is not None:
                plugins.fail(_plugin, problem)
                return
            plugins.executors[executor.name] = executor
            plugins.owners[executor.name] = _plugin

        arguments = {"register": ExecutorRegistry(accept)}
        try:
            impl.function(*[arguments[name] for name in impl.argnames])
        except Exception as exc:
            plugins.fail(plugin_name, exc)


def executor_problem(executor: object) -> str | None:
    """Why ``executor`` cannot be registered, or None."""
    if not isinstance(executor, Executor):
        return f"register() takes an Executor, not {type(executor).__name__}"
    name = executor.name
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        return (
            f"job type name {name!r} is invalid: it must match [a-z][a-z0-9_.-]* "
            "(at most 200 characters)"
        )
    schema = executor.schema
    if isinstance(schema, type) and issubclass(schema, marshmallow.Schema):
        return (
            f"job type {name!r}: schema is the class {schema.__name__}, not an instance "
            f"(write schema={schema.__name__}())"
        )
    if not isinstance(schema, marshmallow.Schema):
        return f"job type {name!r}: schema must be a marshmallow Schema instance, not {schema!r}"
    if not callable(executor.run):
        return f"job type {name!r}: run must be callable, not {executor.run!r}"
    return _defaults_problem(name, executor.defaults)


def _defaults_problem(name: str, defaults: Any) -> str | None:
    """Why a type's submission defaults would make jobs the API refuses, or None."""
    try:
        schemas.SubmitJobSchema().load({"type": name, **dict(defaults)})
    except marshmallow.ValidationError as exc:
        return f"job type {name!r}: bad defaults: {exc.messages}"
    except (TypeError, ValueError) as exc:
        return f"job type {name!r}: defaults must be a mapping: {exc}"
    unknown = set(defaults) - set(DEFAULT_FIELDS)
    if unknown:
        return f"job type {name!r}: defaults may give {', '.join(DEFAULT_FIELDS)} only"
    return None
