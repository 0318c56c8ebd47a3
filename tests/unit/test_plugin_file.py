"""The ``file`` executor: every operation, the sandbox and concurrent appends."""

from __future__ import annotations

import argparse
import hashlib
import os
import threading
from pathlib import Path

import pytest
from marshmallow import ValidationError

from taskframe.core import ExecutorContext, PermanentError
from taskframe.plugins import file


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the root, with a file the executor must never touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("secret")
    return path


def _run(root: Path, **payload: object) -> dict:
    loaded = file.FilePayloadSchema().load(payload)
    options = argparse.Namespace(file_root=str(root))
    return file.run(loaded, ExecutorContext(job_id=1, attempt=1, deadline=None, options=options))


def _snapshot(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_write_creates_parents_and_read_returns_the_content(root: Path) -> None:
    result = _run(root, operation="write", path="a/b/c.txt", content="héllo\n")
    assert result == {"path": "a/b/c.txt", "bytes_written": 7, "size": 7}
    assert (root / "a/b/c.txt").read_text("utf-8") == "héllo\n"
    assert _run(root, operation="write", path="a/b/c.txt", content="x")["size"] == 1
    read = _run(root, operation="read", path="a/b/c.txt")
    assert read == {"path": "a/b/c.txt", "content": "x", "truncated": False, "size": 1}


def test_write_creates_a_missing_root(tmp_path: Path) -> None:
    root = tmp_path / "new-root"
    _run(root, operation="write", path="f", content="1")
    assert (root / "f").read_text() == "1"


def test_append(root: Path) -> None:
    _run(root, operation="append", path="log.txt", content="one\n")
    result = _run(root, operation="append", path="log.txt", content="two\n")
    assert result == {"path": "log.txt", "bytes_written": 4, "size": 8}
    assert (root / "log.txt").read_text() == "one\ntwo\n"


def test_read_is_capped_and_replaces_bad_bytes(root: Path) -> None:
    (root / "big").write_bytes(b"y" * (file.MAX_READ + 10))
    big = _run(root, operation="read", path="big")
    assert big["content"] == "y" * file.MAX_READ
    assert (big["truncated"], big["size"]) == (True, file.MAX_READ + 10)
    (root / "bin").write_bytes(b"ok\xff")
    assert _run(root, operation="read", path="bin")["content"] == "ok\ufffd"


def test_checksum(root: Path) -> None:
    data = os.urandom(3 * 1024 * 1024)
    (root / "data").write_bytes(data)
    result = _run(root, operation="checksum", path="data")
    assert result == {"path": "data", "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_delete_reports_whether_the_file_existed(root: Path) -> None:
    (root / "gone").write_text("x")
    assert _run(root, operation="delete", path="gone") == {"path": "gone", "existed": True}
    assert not (root / "gone").exists()
    assert _run(root, operation="delete", path="gone") == {"path": "gone", "existed": False}
    assert _run(root, operation="delete", path="no/such/dir/f")["existed"] is False


def test_copy_and_move(root: Path) -> None:
    (root / "src.txt").write_text("data")
    copied = _run(root, operation="copy", path="src.txt", destination="d1/copy.txt")
    assert copied == {"path": "src.txt", "destination": "d1/copy.txt", "size": 4}
    assert (root / "src.txt").read_text() == (root / "d1/copy.txt").read_text() == "data"
    moved = _run(root, operation="move", path="src.txt", destination="d2/moved.txt")
    assert moved["destination"] == "d2/moved.txt"
    assert not (root / "src.txt").exists()
    assert (root / "d2/moved.txt").read_text() == "data"


@pytest.mark.parametrize(
    "payload",
    [
        {"operation": "read", "path": "missing"},
        {"operation": "checksum", "path": "missing"},
        {"operation": "copy", "path": "missing", "destination": "x"},
        {"operation": "move", "path": "missing", "destination": "x"},
        {"operation": "read", "path": "dir"},
        {"operation": "delete", "path": "dir"},
        {"operation": "write", "path": "dir", "content": "x"},
        {"operation": "read", "path": "."},
        {"operation": "copy", "path": "f", "destination": "f"},
    ],
)
def test_bad_targets_are_permanent_errors(root: Path, payload: dict) -> None:
    (root / "dir").mkdir()
    (root / "f").write_text("f")
    with pytest.raises(PermanentError):
        _run(root, **payload)
    assert (root / "dir").is_dir() and (root / "f").read_text() == "f"


_ESCAPES = [
    (operation, field, escape)
    for operation in file.OPERATIONS
    for field in ("path", "destination")
    if field == "path" or operation in ("copy", "move")
    for escape in ("absolute", "dotdot", "symlink", "symlinked_dir")
]


@pytest.mark.parametrize(("operation", "field", "escape"), _ESCAPES)
def test_escaping_the_root_is_refused_and_touches_nothing(
    root: Path, outside: Path, operation: str, field: str, escape: str
) -> None:
    (root / "inside.txt").write_text("inside")
    os.symlink(outside / "secret.txt", root / "link")
    os.symlink(outside, root / "linkdir")
    bad = {
        "absolute": str(outside / "secret.txt"),
        "dotdot": "sub/../../outside/secret.txt",
        "symlink": "link",
        "symlinked_dir": "linkdir/secret.txt",
    }[escape]
    payload: dict[str, object] = {"operation": operation, "path": "inside.txt"}
    if operation in ("write", "append"):
        payload["content"] = "pwned"
    if operation in ("copy", "move"):
        payload["destination"] = "copy.txt"
    payload[field] = bad
    before = _snapshot(root), _snapshot(outside)
    with pytest.raises(PermanentError, match=field):
        _run(root, **payload)
    assert (_snapshot(root), _snapshot(outside)) == before
    assert sorted(os.listdir(root)) == ["inside.txt", "link", "linkdir"]


def test_symlinks_inside_the_root_are_followed(root: Path) -> None:
    (root / "real.txt").write_text("real")
    os.symlink("real.txt", root / "alias")
    assert _run(root, operation="read", path="alias")["content"] == "real"
    assert _run(root, operation="delete", path="alias")["existed"] is True
    assert (root / "real.txt").exists() and not (root / "alias").exists()


def test_concurrent_appends_do_not_interleave(root: Path) -> None:
    threads, lines = 8, 50

    def append(worker: int) -> None:
        for n in range(lines):
            line = f"worker {worker} line {n} " + "z" * 500 + "\n"
            _run(root, operation="append", path="shared/log.txt", content=line)

    pool = [threading.Thread(target=append, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    written = (root / "shared/log.txt").read_text().splitlines()
    assert len(written) == threads * lines
    assert all(line.startswith("worker ") and line.endswith("z" * 500) for line in written)
    assert len(set(written)) == threads * lines


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"path": "a"}, "operation"),
        ({"operation": "rename", "path": "a"}, "operation"),
        ({"operation": "read"}, "path"),
        ({"operation": "read", "path": ""}, "path"),
        ({"operation": "write", "path": "a"}, "content"),
        ({"operation": "append", "path": "a"}, "content"),
        ({"operation": "read", "path": "a", "content": "x"}, "content"),
        ({"operation": "copy", "path": "a"}, "destination"),
        ({"operation": "move", "path": "a"}, "destination"),
        ({"operation": "delete", "path": "a", "destination": "b"}, "destination"),
        ({"operation": "write", "path": "a", "content": "x" * (file.MAX_CONTENT + 1)}, "content"),
        ({"operation": "read", "path": "a", "mode": "r"}, "mode"),
    ],
)
def test_schema_errors_name_the_field(payload: dict, field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        file.FilePayloadSchema().load(payload)
    assert list(excinfo.value.messages) == [field]


def test_root_defaults_when_the_option_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    loaded = file.FilePayloadSchema().load({"operation": "write", "path": "f", "content": "1"})
    file.run(loaded, ExecutorContext(job_id=1, attempt=1, deadline=None))
    assert (tmp_path / file.DEFAULT_ROOT / "f").read_text() == "1"
