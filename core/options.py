"""Command-line options that also read ``TASKFRAME_*`` environment variables.

Shared by ``taskframe-server`` and ``taskframe-worker`` (and plugins' options):
one way to read a variable, one error message naming it, one form of
durations (``90``, ``10m``, ``7d``) in and out.
"""

from __future__ import annotations

import argparse
import math
import os
from importlib import metadata
from typing import Any, NoReturn

_TRUE = {"1", "true", "yes", "on"}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class BadEnvironment(ValueError):
    """A ``TASKFRAME_*`` variable holds a value its option refuses (the message names it)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with errors on one line (the full usage is a ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def add_version_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")


def package_version() -> str:
    try:
        return metadata.version("taskframe")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"


def duration(text: str) -> float:
    """Seconds, or a number with a unit: ``90``, ``1.5s``, ``10m``, ``12h``, ``7d``."""
    text = text.strip().lower()
    factor = _UNITS.get(text[-1:], None)
    number = text[:-1] if factor else text
    try:
        value = float(number) * (factor or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds ≥ 0: {text!r}")
    return value


def format_duration(seconds: float) -> str:
    """The form the docs use: ``604800`` -> ``7d``, ``300`` -> ``5m``, ``1.5`` -> ``1.5s``."""
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:g}{unit}"
    return f"{seconds:g}s"


def env_name(flag: str) -> str:
    """``--file-root`` -> ``TASKFRAME_FILE_ROOT``."""
    return "TASKFRAME_" + flag.lstrip("-").replace("-", "_").upper()


def _from_environment(variable: str, raw: str, type: Any, choices: Any) -> Any:
    """``raw`` converted by ``type``, or :class:`BadEnvironment` naming ``variable``."""
    try:
        value = type(raw)
    except argparse.ArgumentTypeError as exc:
        reason = str(exc)
    except (ValueError, TypeError):
        kind = {"int": "an integer", "float": "a number"}.get(getattr(type, "__name__", ""), "")
        reason = f"{raw!r} is not {kind or 'a valid value'}"
    else:
        if choices is None or value in choices:
            return value
        reason = f"invalid choice {value!r} (choose from {', '.join(map(str, choices))})"
    raise BadEnvironment(f"{variable}: {reason}; fix or unset the variable")


def add_option(
    parser: argparse.ArgumentParser | Any,
    flag: str,
    *,
    help: str,
    default: Any = None,
    type: Any = str,
    flag_only: bool = False,
    env: str | None = None,
    **kwargs: Any,
) -> None:
    """Add ``flag`` to ``parser`` with its default taken from the environment.

    ``flag_only=True`` makes a boolean switch (``store_true``); its variable
    is true when set to 1, true, yes or on. A variable the option refuses
    raises :class:`BadEnvironment` (the commands answer it with exit code 2).
    ``env`` overrides the variable's name where the derived one would clash.
    """
    variable = env or env_name(flag)
    raw = os.environ.get(variable)
    if flag_only:
        value = raw.strip().lower() in _TRUE if raw is not None else bool(default)
        parser.add_argument(
            flag, action="store_true", default=value, help=f"{help} [env {variable}]", **kwargs
        )
        return
    if raw in (None, ""):
        value = default
    else:
        value = _from_environment(variable, raw, type, kwargs.get("choices"))
    if default is None:
        shown = ""
    elif type is duration:
        shown = f", default {format_duration(default)}"
    else:
        shown = f", default {default}"
    parser.add_argument(
        flag, type=type, default=value, help=f"{help} [env {variable}{shown}]", **kwargs
    )
