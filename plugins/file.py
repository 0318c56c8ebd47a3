"""The ``file`` executor: file operations inside a sandbox root.

The worker's ``--file-root`` option (env ``TASKFRAME_FILE_ROOT``, default
``taskframe-files``) names the root. Payload: ``operation`` (write, append,
read, delete, copy, move, checksum), ``path`` relative to the root, ``content``
(text, at most 10 MiB as UTF-8; write and append only) and ``destination``
(copy and move only).

Results (``path`` and ``destination`` are echoed as given):

- write, append: ``{"path", "bytes_written", "size"}``
- read: ``{"path", "content", "truncated", "size"}``; ``content`` is at most the
  first 1 MiB, decoded as UTF-8 with undecodable bytes replaced
- delete: ``{"path", "existed"}``; a missing file is not an error
- copy, move: ``{"path", "destination", "size"}``
- checksum: ``{"path", "sha256", "size"}``

An absolute path, a ``..`` component or a path resolving (through symlinks)
outside the root fails the job at once and touches nothing; so do a missing
source, a directory where a file is expected and permission errors. ``append``
writes its content with one ``write`` on an ``O_APPEND`` descriptor, so
concurrent appends do not interleave; like every job it may run more than once
(at-least-once delivery), so a retried append can repeat its content.
Delete and move act on the entry itself (a symlink, not its target); the other
operations follow symlinks that stay inside the root.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import stat
from collections.abc import Callable
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from taskframe.core import Executor, ExecutorContext, PermanentError, hookimpl
from taskframe.core.options import add_option

OPERATIONS = ("write", "append", "read", "delete", "copy", "move", "checksum")
DEFAULT_ROOT = "taskframe-files"
MAX_CONTENT = 10 * 1024 * 1024
MAX_READ = 1024 * 1024
_NEEDS_CONTENT = ("write", "append")
_NEEDS_DESTINATION = ("copy", "move")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)


def _validate_content(value: str) -> None:
    if len(value) > MAX_CONTENT or len(value.encode("utf-8")) > MAX_CONTENT:
        raise ValidationError(f"must be at most {MAX_CONTENT} bytes as UTF-8")


_path_length = validate.Length(min=1, max=4096)


class FilePayloadSchema(Schema):
    """Payload of a ``file`` job."""

    operation = fields.String(
        required=True, validate=validate.OneOf(OPERATIONS, error="must be one of {choices}")
    )
    path = fields.String(
        required=True,
        validate=_path_length,
        metadata={"description": "file path relative to the worker's --file-root"},
    )
    content = fields.String(
        validate=_validate_content,
        metadata={"description": "text to write or append (write, append), at most 10 MiB"},
    )
    destination = fields.String(
        validate=_path_length,
        metadata={"description": "target path relative to the root (copy, move)"},
    )

    @validates_schema
    def _cross_fields(self, data: dict[str, Any], **kwargs: Any) -> None:
        operation = data.get("operation")
        if operation is None:
            return
        errors: dict[str, str] = {}
        if operation in _NEEDS_CONTENT and "content" not in data:
            errors["content"] = f"required for {operation}"
        if operation not in _NEEDS_CONTENT and "content" in data:
            errors["content"] = "only allowed for write and append"
        if operation in _NEEDS_DESTINATION and "destination" not in data:
            errors["destination"] = f"required for {operation}"
        if operation not in _NEEDS_DESTINATION and "destination" in data:
            errors["destination"] = "only allowed for copy and move"
        if errors:
            raise ValidationError({field: [message] for field, message in errors.items()})


class _Target:
    """A path checked against the root: ``real`` is fully resolved, ``entry``
    is the directory entry itself (resolved parent + final name)."""

    def __init__(self, root: str, relative: str, field: str) -> None:
        if "\0" in relative:
            raise PermanentError(f"{field} contains a NUL character")
        if os.path.isabs(relative) or relative.startswith(("/", "\\")):
            raise PermanentError(f"{field} must be relative to the file root: {relative!r}")
        parts = relative.replace("\\", "/").split("/")  # "\\" counts as a separator everywhere
        if ".." in parts:
            raise PermanentError(f"{field} must not contain '..': {relative!r}")
        joined = os.path.join(root, relative)
        self.real = os.path.realpath(joined)
        parent = os.path.realpath(os.path.dirname(joined))
        if not (_inside(self.real, root) and _inside(parent, root)):
            raise PermanentError(f"{field} resolves outside the file root: {relative!r}")
        self.entry = os.path.join(parent, os.path.basename(joined))
        if self.real == root or os.path.basename(joined) in ("", "."):
            raise PermanentError(f"{field} must name a file inside the root: {relative!r}")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _write(fd_path: str, data: bytes, flags: int) -> tuple[int, int]:
    os.makedirs(os.path.dirname(fd_path), exist_ok=True)
    fd = os.open(fd_path, os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _BINARY | flags, 0o666)
    try:
        written = os.write(fd, data)  # one call: O_APPEND writes land whole
        while written < len(data):  # only on a short write (e.g. disk nearly full)
            written += os.write(fd, data[written:])
        return written, os.fstat(fd).st_size
    finally:
        os.close(fd)


def _checksum(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _regular(path: str, relative: str, missing_ok: bool = False) -> None:
    """Refuse directories, FIFOs and devices, where a read or write could block or fail."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        if missing_ok:
            return
        raise
    if not stat.S_ISREG(mode):
        raise PermanentError(f"{relative!r} is not a regular file")


def _not_directory(entry: str, relative: str) -> None:
    try:
        is_dir = stat.S_ISDIR(os.lstat(entry).st_mode)
    except FileNotFoundError:
        return
    if is_dir:
        raise PermanentError(f"{relative!r} is a directory")


def _operate(payload: dict[str, Any], root: str) -> dict[str, Any]:
    operation, relative = payload["operation"], payload["path"]
    target = _Target(root, relative, "path")
    destination = None
    if operation in _NEEDS_DESTINATION:
        destination = _Target(root, payload["destination"], "destination")
    result: dict[str, Any] = {"path": relative}
    if operation in _NEEDS_CONTENT:
        _regular(target.real, relative, missing_ok=True)
        flags = os.O_APPEND if operation == "append" else os.O_TRUNC
        data = payload["content"].encode("utf-8")
        result["bytes_written"], result["size"] = _write(target.real, data, flags)
    elif operation == "read":
        _regular(target.real, relative)
        with open(target.real, "rb") as handle:
            data = handle.read(MAX_READ + 1)
            size = os.fstat(handle.fileno()).st_size
        result["content"] = data[:MAX_READ].decode("utf-8", errors="replace")
        result["truncated"] = len(data) > MAX_READ
        result["size"] = size
    elif operation == "checksum":
        _regular(target.real, relative)
        result["sha256"], result["size"] = _checksum(target.real)
    elif operation == "delete":
        _not_directory(target.entry, relative)
        try:
            os.remove(target.entry)
            result["existed"] = True
        except FileNotFoundError:
            result["existed"] = False
    else:
        assert destination is not None
        _regular(target.real, relative)
        _not_directory(destination.entry, payload["destination"])
        size = os.path.getsize(target.real)
        os.makedirs(os.path.dirname(destination.real), exist_ok=True)
        if operation == "copy":
            shutil.copyfile(target.real, destination.real)
        else:
            os.replace(target.entry, destination.entry)
        result["destination"] = payload["destination"]
        result["size"] = size
    return result


def run(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    """Run one file operation under ``context.options.file_root``."""
    root = os.path.realpath(getattr(context.options, "file_root", None) or DEFAULT_ROOT)
    try:
        return _operate(payload, root)
    except FileNotFoundError as exc:
        raise PermanentError(f"{payload['operation']} {payload['path']!r}: no such file") from exc
    except (
        IsADirectoryError,
        NotADirectoryError,
        FileExistsError,
        PermissionError,
        shutil.SameFileError,
    ) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise PermanentError(f"{payload['operation']} {payload['path']!r}: {reason}") from exc


@hookimpl
def taskframe_add_options(parser: argparse.ArgumentParser, role: str) -> None:
    """Add ``--file-root`` to the worker."""
    if role != "worker":
        return
    group = parser.add_argument_group("file executor")
    add_option(
        group, "--file-root", help="directory the file executor works in", default=DEFAULT_ROOT
    )


@hookimpl
def taskframe_register_executors(register: Callable[[Executor], None]) -> None:
    """Register the ``file`` executor."""
    register(
        Executor(
            name="file",
            schema=FilePayloadSchema(),
            run=run,
            description="Write, append, read, delete, copy, move or checksum a file "
            "under the worker's --file-root sandbox.",
        )
    )
