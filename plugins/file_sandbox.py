"""Opening paths under the ``file`` executor's root without ever leaving it.

Every component is opened relative to the descriptor of the directory before
it, with ``O_NOFOLLOW`` (``O_DIRECTORY`` for directories): a symbolic link
anywhere in the path is refused, and a file or directory swapped for a link
while a job runs makes the job fail, never lead outside the root. Operations
then act on the descriptors opened (``fstat``, ``read``, ``write``) or on names
inside an opened directory (``unlinkat``, ``renameat``), never on a path looked
up again. A regular file with more than one hard link is refused, since the
other link may live outside the root. POSIX only (``dir_fd`` support).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager

from taskframe.core import PermanentError

MAX_NAME = 255
#: Deeper trees break recursive tools (and Python's own rmtree before 3.12).
MAX_DEPTH = 128
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
#: O_NONBLOCK: opening a FIFO must not hang the job; fstat then refuses it.
_FILE = os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
#: Errors worth another attempt; any other OSError cannot succeed later.
RETRYABLE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "EBUSY",
        "EDQUOT",
        "EINTR",
        "EIO",
        "EMFILE",
        "ENFILE",
        "ENOMEM",
        "ENOSPC",
        "ESTALE",
        "ETXTBSY",
    )  # fmt: skip
    if hasattr(errno, name)
)


def split_path(relative: str) -> list[str]:
    """The components of a path relative to the root; ``ValueError`` says what is wrong.

    Both ``/`` and ``\\`` separate components; empty and ``.`` components are
    skipped. Used by the payload schema (at submission) and again by the worker.
    """
    if "\0" in relative:
        raise ValueError("must not contain a NUL character")
    if relative.startswith(("/", "\\")) or os.path.isabs(relative):
        raise ValueError("must be relative to the file root")
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"cannot be encoded as UTF-8: {exc.reason}") from None
    parts = relative.replace("\\", "/").split("/")
    if ".." in parts:
        raise ValueError("must not contain '..'")
    if parts[-1] in ("", "."):
        raise ValueError("must name a file, not a directory")
    names = [part for part in parts if part not in ("", ".")]
    if any(len(name.encode("utf-8")) > MAX_NAME for name in names):
        raise ValueError(f"a path component is longer than {MAX_NAME} bytes")
    if len(names) > MAX_DEPTH:
        raise ValueError(f"more than {MAX_DEPTH} components")
    return names


@contextmanager
def open_parent(root: str, names: list[str], *, create: bool, label: str) -> Iterator[int | None]:
    """A descriptor of the directory holding ``names[-1]`` under ``root``, or None
    when a directory on the way is missing. With ``create`` the missing
    directories (the root included) are made. ``label`` names the path in errors.
    """
    if create:
        os.makedirs(root, exist_ok=True)  # the operator's root itself may be a link
    try:
        fd: int | None = os.open(root, os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC)
    except FileNotFoundError:
        if create:
            raise
        fd = None
    try:
        for name in names[:-1]:
            if fd is None:
                break
            child = _open_directory(fd, name, create=create, label=label)
            os.close(fd)
            fd = child
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def _open_directory(fd: int, name: str, *, create: bool, label: str) -> int | None:
    try:
        return os.open(name, _DIRECTORY, dir_fd=fd)
    except FileNotFoundError:
        if not create:
            return None
    except OSError as exc:
        raise _refusal(exc, label, name, "a directory", fd) from exc
    try:
        os.mkdir(name, 0o777, dir_fd=fd)
    except FileExistsError:
        pass  # made meanwhile by another job: open it as it is
    try:
        return os.open(name, _DIRECTORY, dir_fd=fd)
    except OSError as exc:
        raise _refusal(exc, label, name, "a directory", fd) from exc


def open_file(parent: int, name: str, flags: int, label: str) -> tuple[int, os.stat_result]:
    """Open ``name`` in directory ``parent`` without following a link.

    Anything but a regular file with one link is refused. Returns the
    descriptor and its ``fstat``; the caller closes it.
    """
    try:
        fd = os.open(name, flags | _FILE, 0o666, dir_fd=parent)
    except OSError as exc:
        raise _refusal(exc, label, name, "a regular file", parent) from exc
    try:
        info = os.fstat(fd)
        check_regular(info, label)
        return fd, info
    except BaseException:
        os.close(fd)
        raise


def check_regular(info: os.stat_result, label: str) -> None:
    """Refuse what is not a regular file, and a file with other hard links."""
    if stat.S_ISLNK(info.st_mode):
        raise PermanentError(f"{label} is a symbolic link; links are never followed")
    if stat.S_ISDIR(info.st_mode):
        raise PermanentError(f"{label} is a directory")
    if not stat.S_ISREG(info.st_mode):
        raise PermanentError(f"{label} is not a regular file")
    if info.st_nlink > 1:
        raise PermanentError(
            f"{label} has {info.st_nlink} hard links; refused, since another link may be "
            "outside the file root"
        )


def _refusal(exc: OSError, label: str, name: str, expected: str, parent: int) -> Exception:
    """Turn what ``O_NOFOLLOW``/``O_DIRECTORY`` report into a clear permanent error."""
    if exc.errno == errno.ENOTDIR and _is_link(name, parent):
        exc.errno = errno.ELOOP  # O_DIRECTORY on a link to a directory says ENOTDIR
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return PermanentError(f"{label}: {name!r} is a symbolic link; links are never followed")
    if exc.errno == errno.ENOTDIR:
        return PermanentError(f"{label}: {name!r} is not {expected}")
    if exc.errno == errno.EISDIR:
        return PermanentError(f"{label} is a directory")
    if exc.errno == errno.ENXIO:  # a FIFO without a reader
        return PermanentError(f"{label} is not a regular file")
    return exc


def _is_link(name: str, parent: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False
