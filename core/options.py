"""Command-line options that also read ``TASKFRAME_*`` environment variables."""

from __future__ import annotations

import argparse
import os
from typing import Any

_TRUE = {"1", "true", "yes", "on"}


def env_name(flag: str) -> str:
    """``--file-root`` -> ``TASKFRAME_FILE_ROOT``."""
    return "TASKFRAME_" + flag.lstrip("-").replace("-", "_").upper()


def add_option(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    *,
    help: str,
    default: Any = None,
    type: Any = str,
    flag_only: bool = False,
    **kwargs: Any,
) -> None:
    """Add ``flag`` to ``parser`` with its default taken from the environment.

    ``flag_only=True`` makes a boolean switch (``store_true``); its variable
    is true when set to 1, true, yes or on.
    """
    variable = env_name(flag)
    raw = os.environ.get(variable)
    if flag_only:
        value = raw.strip().lower() in _TRUE if raw is not None else bool(default)
        parser.add_argument(
            flag, action="store_true", default=value, help=f"{help} [env {variable}]", **kwargs
        )
        return
    value = type(raw) if raw not in (None, "") else default
    shown = "" if default is None else f", default {default}"
    parser.add_argument(
        flag, type=type, default=value, help=f"{help} [env {variable}{shown}]", **kwargs
    )
