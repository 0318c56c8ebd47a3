"""Every taskframe hook, in one place. Hook names start with ``taskframe_``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Literal

import pluggy

from taskframe.core.executor import Executor

hookspec = pluggy.HookspecMarker("taskframe")

Role = Literal["server", "worker"]


@hookspec
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    """Contribute job types.

    :param register: call it once per :class:`~taskframe.core.Executor` the
        plugin provides. A name already registered by another plugin is an
        error reported for the later plugin; the earlier one stays.
    """


@hookspec
def taskframe_add_options(parser: argparse.ArgumentParser, role: Role) -> None:
    """Add command-line options to ``taskframe-server`` or ``taskframe-worker``.

    Options become attributes of the namespace executors see as
    ``context.options``. Give each a ``TASKFRAME_*`` environment default, as
    the built-in options do.

    :param parser: the command's argument parser (add an argument group).
    :param role: ``"server"`` or ``"worker"``; a standalone server calls the
        hook for both roles.
    """
