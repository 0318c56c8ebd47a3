"""Tasks modules: a module of ``@task`` functions as a plugin, with no packaging.

``--tasks app.tasks,more_tasks`` (or ``TASKFRAME_TASKS``) imports each module
and registers the tasks it holds as a plugin named after the module. The
current directory comes first on the import path, as with ``python -m``, so
``--tasks tasks`` finds ``./tasks.py``. A module published through the
``taskframe`` entry-point group (``mytasks = "mypkg.tasks"``) is registered
the same way. A job type defined both ways is a clash, reported like any.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

from taskframe.core.executor import ExecutorRegistry, hookimpl
from taskframe.core.task import Task

log = logging.getLogger("taskframe.plugins")

TASKS_VARIABLE = "TASKFRAME_TASKS"


class TasksModuleError(Exception):
    """A tasks module could not be imported; the message is one line naming it."""


def module_names(text: str | None) -> list[str]:
    """``"app.tasks, more"`` -> ``["app.tasks", "more"]``."""
    return [name.strip() for name in (text or "").split(",") if name.strip()]


def import_module(name: str) -> ModuleType:
    """Import a tasks module, the current directory first on the path."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    if name.endswith(".py"):
        raise TasksModuleError(
            f"--tasks: give a module name, not a file: {name[:-3].replace('/', '.')!r}"
        )
    try:
        return importlib.import_module(name)
    except Exception as exc:  # anything the module raises: syntax, hints, its imports
        text = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise TasksModuleError(f"--tasks: cannot import {name!r}: {text}") from None


def tasks_in(module: ModuleType) -> list[Task]:
    """The tasks a module holds (each object once, in the module's order)."""
    found: dict[int, Task] = {}
    for value in vars(module).values():
        if isinstance(value, Task):
            found.setdefault(id(value), value)
    return list(found.values())


class TasksPlugin:
    """The plugin of one tasks module: it registers the module's tasks."""

    def __init__(self, module: ModuleType, tasks: Iterable[Task]) -> None:
        self.__name__ = module.__name__
        self.module = module
        self.tasks = list(tasks)

    @hookimpl
    def taskframe_register_executors(self, register: ExecutorRegistry) -> None:
        for task in self.tasks:
            register.add(task)

    def __repr__(self) -> str:
        return f"<tasks of {self.module.__name__}>"


def has_hooks(plugin: Any) -> bool:
    return any(name.startswith("taskframe_") for name in dir(plugin))


def entry_point_plugins(plugin: Any, name: str) -> list[tuple[Any, str]]:
    """What to register for an entry point: the plugin itself, or (and) its tasks.

    A module with tasks and no hooks is registered as its tasks; one with
    both is registered as it is, its tasks under ``NAME.tasks``.
    """
    if not isinstance(plugin, ModuleType):
        return [(plugin, name)]
    tasks = tasks_in(plugin)
    if not tasks:
        return [(plugin, name)]
    if not has_hooks(plugin):
        return [(TasksPlugin(plugin, tasks), name)]
    return [(plugin, name), (TasksPlugin(plugin, tasks), f"{name}.tasks")]


def tasks_plugins(names: Iterable[str]) -> list[TasksPlugin]:
    """Import each module (TasksModuleError on the first that fails) and wrap its tasks.

    A module that defines no task is logged as a warning naming it.
    """
    plugins = []
    for name in names:
        module = import_module(name)
        tasks = tasks_in(module)
        if not tasks:
            log.warning("tasks module %r defines no task (decorate functions with @task)", name)
        plugins.append(TasksPlugin(module, tasks))
    return plugins
