"""Build the plugin manager and collect the executors that plugins register."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import ModuleType

import pluggy

from taskframe.core import hookspecs
from taskframe.core.executor import Executor

ENTRY_POINT_GROUP = "taskframe"
log = logging.getLogger("taskframe.plugins")


@dataclass
class PluginSet:
    """The loaded plugins: a plugin manager, the executors by name, the failures."""

    manager: pluggy.PluginManager
    executors: dict[str, Executor] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.executors)


def create_plugin_manager(
    extra_plugins: tuple[ModuleType | object, ...] = (), load_entry_points: bool = True
) -> PluginSet:
    """Load the ``taskframe`` entry points (plus ``extra_plugins``) and their executors.

    A plugin that fails to import, or whose registration raises, is reported
    by name in ``failures`` (logged at DEBUG with its traceback); the others
    still load.
    """
    manager = pluggy.PluginManager("taskframe")
    manager.add_hookspecs(hookspecs)
    plugins = PluginSet(manager)
    if load_entry_points:
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
            if manager.get_plugin(entry_point.name) is not None:
                continue
            try:
                manager.register(entry_point.load(), name=entry_point.name)
            except Exception as exc:  # a broken plugin must not stop the others
                _record_failure(plugins, entry_point.name, exc)
    for plugin in extra_plugins:
        manager.register(plugin)
    _collect_executors(plugins)
    return plugins


def _collect_executors(plugins: PluginSet) -> None:
    manager = plugins.manager
    for impl in manager.hook.taskframe_register_executors.get_hookimpls():
        plugin_name = manager.get_name(impl.plugin) or repr(impl.plugin)

        def register(executor: Executor, _plugin: str = plugin_name) -> None:
            if executor.name in plugins.executors:
                raise ValueError(f"job type {executor.name!r} is already registered")
            plugins.executors[executor.name] = executor

        try:
            impl.function(register=register)
        except Exception as exc:
            _record_failure(plugins, plugin_name, exc)


def _record_failure(plugins: PluginSet, name: str, exc: Exception) -> None:
    message = f"{type(exc).__name__}: {exc}"
    plugins.failures[name] = message
    # The commands report failures once (the server in its start banner).
    log.debug("plugin %r failed to load: %s", name, message, exc_info=exc)
