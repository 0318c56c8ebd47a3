"""The ``file`` executor: file operations inside a sandbox root.

The worker's ``--file-root`` option (env ``TASKFRAME_FILE_ROOT``, default
``taskframe-files``) names the root. Payload: ``operation`` (write, append,
read, delete, copy, move, checksum), ``path`` relative to the root, ``content``
(text, at most 500 KiB as UTF-8; write and append only) and ``destination``
(copy and move only).

Results (``path`` and ``destination`` are echoed as given):

- write, append: ``{"path", "bytes_written", "size"}``
- read: ``{"path", "content", "truncated", "size"}``; ``content`` is at most the
  first 1 MiB, decoded as UTF-8 with undecodable bytes replaced
- delete: ``{"path", "existed"}``; a missing file is not an error
- copy, move: ``{"path", "destination", "size"}``
- checksum: ``{"path", "sha256", "size"}``

An absolute path, a ``..`` component, a NUL byte, a component over 255 bytes
or a path naming a directory is refused at submission (422) and again on the
worker. On the worker every component is opened relative to the directory
before it without following symbolic links (see
:mod:`taskframe.plugins.file_sandbox`): a link anywhere in the path, a file
with more than one hard link (for any operation, reads included), a
directory, FIFO or device where a file is expected, a missing source and
permission errors fail the job at once and touch nothing outside the root.
``append`` writes its content with one ``write`` on an ``O_APPEND``
descriptor, so concurrent appends do not interleave; like every job it may run
more than once (at-least-once delivery), so a retried append can repeat its
content.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from taskframe.core import Executor, ExecutorContext, PermanentError, hookimpl
from taskframe.core.options import add_option
from taskframe.plugins.file_sandbox import (
    RETRYABLE_ERRNOS,
    check_regular,
    open_file,
    open_parent,
    split_path,
)

OPERATIONS = ("write", "append", "read", "delete", "copy", "move", "checksum")
DEFAULT_ROOT = "taskframe-files"
#: Under half the server's default --max-body (1 MiB): a job carrying the
#: largest content fits it even when JSON doubles every byte (quotes, newlines).
MAX_CONTENT = 500 * 1024
MAX_READ = 1024 * 1024
_NEEDS_CONTENT = ("write", "append")
_NEEDS_DESTINATION = ("copy", "move")
_BINARY = getattr(os, "O_BINARY", 0)
_CHUNK = 1024 * 1024


def _validate_content(value: str) -> None:
    if len(value) > MAX_CONTENT:
        raise ValidationError(f"must be at most {MAX_CONTENT} bytes as UTF-8")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(f"cannot be encoded as UTF-8: {exc.reason}") from None
    if size > MAX_CONTENT:
        raise ValidationError(f"must be at most {MAX_CONTENT} bytes as UTF-8")


def _validate_path(value: str) -> None:
    try:
        split_path(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


_path: list[Callable[[Any], Any]] = [validate.Length(min=1, max=4096), _validate_path]


class FilePayloadSchema(Schema):
    """Payload of a ``file`` job."""

    operation = fields.String(
        required=True, validate=validate.OneOf(OPERATIONS, error="must be one of {choices}")
    )
    path = fields.String(
        required=True,
        validate=_path,
        metadata={"description": "file path relative to the worker's --file-root"},
    )
    content = fields.String(
        validate=_validate_content,
        metadata={
            "description": "text to write or append (write, append), at most 500 KiB as UTF-8"
        },
    )
    destination = fields.String(
        validate=_path,
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


def quick_load(payload: Any) -> dict[str, Any] | None:
    """``FilePayloadSchema().load(payload)`` for a plainly valid payload, else None.

    The same validators run; only marshmallow's field plumbing is skipped.
    """
    if type(payload) is not dict:
        return None
    operation, path = payload.get("operation"), payload.get("path")
    has_content, has_destination = "content" in payload, "destination" in payload
    if (
        len(payload) != 2 + has_content + has_destination
        or type(operation) is not str
        or operation not in OPERATIONS
        or has_content != (operation in _NEEDS_CONTENT)
        or has_destination != (operation in _NEEDS_DESTINATION)
        or not _quick_path(path)
        or (has_content and type(payload["content"]) is not str)
        or (has_destination and not _quick_path(payload["destination"]))
    ):
        return None
    try:
        if has_content:
            _validate_content(payload["content"])
    except ValidationError:
        return None
    # In the schema's field order: the stored JSON is the same text.
    return {name: payload[name] for name in _FIELD_ORDER if name in payload}


def _quick_path(value: Any) -> bool:
    if type(value) is not str or not 1 <= len(value) <= 4096:
        return False
    try:
        _validate_path(value)
    except ValidationError:
        return False
    return True


_FIELD_ORDER = tuple(FilePayloadSchema._declared_fields)


def _write(parent: int, name: str, data: bytes, append: bool, label: str) -> tuple[int, int]:
    flags = os.O_WRONLY | os.O_CREAT | _BINARY | (os.O_APPEND if append else 0)
    fd, _ = open_file(parent, name, flags, label)
    try:
        if not append:  # truncated only once the checks passed, not by O_TRUNC
            os.ftruncate(fd, 0)
        written = os.write(fd, data)  # one call: O_APPEND writes land whole
        while written < len(data):  # only on a short write (e.g. disk nearly full)
            written += os.write(fd, data[written:])
        return written, os.fstat(fd).st_size
    finally:
        os.close(fd)


def _chunks(fd: int, limit: int | None = None) -> Iterator[bytes]:
    left = limit
    while left is None or left > 0:
        chunk = os.read(fd, _CHUNK if left is None else min(_CHUNK, left))
        if not chunk:
            return
        if left is not None:
            left -= len(chunk)
        yield chunk


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class _Path:
    """A payload path, split and checked again on the worker."""

    def __init__(self, payload: dict[str, Any], field: str) -> None:
        self.text = payload[field]
        self.label = f"{field} {self.text!r}"
        try:
            self.names = split_path(self.text)
        except ValueError as exc:
            raise PermanentError(f"{self.label}: {exc}") from None
        self.name = self.names[-1]


def _operate(payload: dict[str, Any], root: str) -> dict[str, Any]:
    operation = payload["operation"]
    path = _Path(payload, "path")
    destination = _Path(payload, "destination") if operation in _NEEDS_DESTINATION else None
    result: dict[str, Any] = {"path": path.text}
    if operation in _NEEDS_CONTENT:
        data = payload["content"].encode("utf-8")
        with open_parent(root, path.names, create=True, label=path.label) as parent:
            assert parent is not None
            append = operation == "append"
            result["bytes_written"], result["size"] = _write(
                parent, path.name, data, append, path.label
            )
        return result
    if operation == "delete":
        result["existed"] = _delete(root, path)
        return result
    with open_parent(root, path.names, create=False, label=path.label) as parent:
        if parent is None:
            raise FileNotFoundError(path.text)
        fd, info = open_file(parent, path.name, os.O_RDONLY | _BINARY, path.label)
        try:
            if operation == "read":
                data = b"".join(_chunks(fd, MAX_READ + 1))
                result["content"] = data[:MAX_READ].decode("utf-8", errors="replace")
                result["truncated"] = len(data) > MAX_READ
                result["size"] = os.fstat(fd).st_size
            elif operation == "checksum":
                digest, size = hashlib.sha256(), 0
                for chunk in _chunks(fd):
                    digest.update(chunk)
                    size += len(chunk)
                result["sha256"], result["size"] = digest.hexdigest(), size
            else:
                assert destination is not None
                result["destination"] = destination.text
                if operation == "copy":
                    result["size"] = _copy(root, fd, info, destination)
                else:
                    _move(root, parent, path, info, destination)
                    result["size"] = info.st_size
        finally:
            os.close(fd)
    return result


def _delete(root: str, path: _Path) -> bool:
    with open_parent(root, path.names, create=False, label=path.label) as parent:
        if parent is None:
            return False
        try:
            check_regular(os.stat(path.name, dir_fd=parent, follow_symlinks=False), path.label)
            os.unlink(path.name, dir_fd=parent)  # unlinkat: removes the entry, follows nothing
        except FileNotFoundError:
            return False
        return True


def _copy(root: str, source: int, info: os.stat_result, destination: _Path) -> int:
    with open_parent(root, destination.names, create=True, label=destination.label) as parent:
        assert parent is not None
        flags = os.O_WRONLY | os.O_CREAT | _BINARY
        fd, target = open_file(parent, destination.name, flags, destination.label)
        try:
            if (target.st_dev, target.st_ino) == (info.st_dev, info.st_ino):
                raise PermanentError(f"{destination.label} is the source file itself")
            os.ftruncate(fd, 0)
            size = 0
            for chunk in _chunks(source):
                _write_all(fd, chunk)
                size += len(chunk)
            return size
        finally:
            os.close(fd)


def _move(root: str, parent: int, path: _Path, info: os.stat_result, destination: _Path) -> None:
    with open_parent(root, destination.names, create=True, label=destination.label) as target:
        assert target is not None
        try:
            existing = os.stat(destination.name, dir_fd=target, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if (existing.st_dev, existing.st_ino) != (info.st_dev, info.st_ino):
                check_regular(existing, destination.label)
        # renameat: both names inside directories opened without following links
        os.replace(path.name, destination.name, src_dir_fd=parent, dst_dir_fd=target)


def run(payload: dict[str, Any], context: ExecutorContext) -> dict[str, Any]:
    """Run one file operation under ``context.options.file_root``."""
    root = os.path.realpath(getattr(context.options, "file_root", None) or DEFAULT_ROOT)
    label = f"{payload['operation']} {payload['path']!r}"
    try:
        return _operate(payload, root)
    except FileNotFoundError as exc:
        raise PermanentError(f"{label}: no such file") from exc
    except OSError as exc:
        if exc.errno in RETRYABLE_ERRNOS:
            raise  # a full disk, too many open files...: worth another attempt
        reason = exc.strerror or str(exc)
        raise PermanentError(f"{label}: {type(exc).__name__}: {reason}") from exc
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise PermanentError(f"{label}: {type(exc).__name__}: {exc}") from exc


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
            quick_load=quick_load,
            description="Write, append, read, delete, copy, move or checksum a file "
            "under the worker's --file-root sandbox.",
        )
    )
