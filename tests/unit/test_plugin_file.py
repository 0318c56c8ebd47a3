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
from taskframe.plugins import file, file_sandbox
from tests import sandbox_attack


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


def _run_unchecked(root: Path, **payload: object) -> dict:
    """Skip the schema, as a payload that reached the worker some other way would."""
    options = argparse.Namespace(file_root=str(root))
    return file.run(payload, ExecutorContext(job_id=1, attempt=1, deadline=None, options=options))


_snapshot = sandbox_attack.snapshot


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
        {"operation": "copy", "path": "f", "destination": "dir"},
        {"operation": "copy", "path": "f", "destination": "f"},
        {"operation": "read", "path": "f/below-a-file"},
        {"operation": "write", "path": "f/below-a-file", "content": "x"},
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
    if escape in ("absolute", "dotdot"):  # refused at submission, and again on the worker
        with pytest.raises(ValidationError) as excinfo:
            file.FilePayloadSchema().load(payload)
        assert list(excinfo.value.messages) == [field]
        with pytest.raises(PermanentError, match=field):
            _run_unchecked(root, **payload)
    else:
        with pytest.raises(PermanentError, match=f"{field}.*symbolic link"):
            _run(root, **payload)
    assert (_snapshot(root), _snapshot(outside)) == before
    assert sorted(os.listdir(root)) == ["inside.txt", "link", "linkdir"]


def test_symlinks_are_never_followed_even_inside_the_root(root: Path) -> None:
    (root / "real.txt").write_text("real")
    (root / "dir").mkdir()
    os.symlink("real.txt", root / "alias")
    os.symlink("dir", root / "dirlink")
    for payload in (
        {"operation": "read", "path": "alias"},
        {"operation": "delete", "path": "alias"},
        {"operation": "move", "path": "alias", "destination": "moved"},
        {"operation": "write", "path": "dirlink/new.txt", "content": "x"},
        {"operation": "copy", "path": "real.txt", "destination": "alias"},
    ):
        with pytest.raises(PermanentError, match="symbolic link"):
            _run(root, **payload)
    assert (root / "real.txt").read_text() == "real" and os.path.islink(root / "alias")
    assert os.listdir(root / "dir") == [] and not (root / "moved").exists()


@pytest.mark.parametrize(
    "payload",
    [
        {"operation": "read", "path": "linked"},
        {"operation": "checksum", "path": "linked"},
        {"operation": "write", "path": "linked", "content": "pwned"},
        {"operation": "append", "path": "linked", "content": "pwned"},
        {"operation": "delete", "path": "linked"},
        {"operation": "copy", "path": "linked", "destination": "copy"},
        {"operation": "copy", "path": "inside.txt", "destination": "linked"},
        {"operation": "move", "path": "linked", "destination": "moved"},
        {"operation": "move", "path": "inside.txt", "destination": "linked"},
    ],
)
def test_files_with_several_hard_links_are_refused(
    root: Path, outside: Path, payload: dict
) -> None:
    """A hard link in the root to a file outside it reaches that file: refused."""
    (root / "inside.txt").write_text("inside")
    os.link(outside / "secret.txt", root / "linked")
    before = _snapshot(root), _snapshot(outside)
    with pytest.raises(PermanentError, match="2 hard links"):
        _run(root, **payload)
    assert (_snapshot(root), _snapshot(outside)) == before


def test_fifos_are_refused_at_once(root: Path) -> None:
    """Reading or copying onto a FIFO neither hangs nor is retried."""
    os.mkfifo(root / "fifo")
    (root / "f").write_text("f")
    for payload in (
        {"operation": "read", "path": "fifo"},
        {"operation": "checksum", "path": "fifo"},
        {"operation": "write", "path": "fifo", "content": "x"},
        {"operation": "copy", "path": "f", "destination": "fifo"},
        {"operation": "move", "path": "f", "destination": "fifo"},
        {"operation": "delete", "path": "fifo"},
    ):
        with pytest.raises(PermanentError, match="not a regular file"):
            _run(root, **payload)
    assert (root / "f").read_text() == "f"


def test_a_symlink_loop_is_a_permanent_error(root: Path) -> None:
    os.symlink("b", root / "a")
    os.symlink("a", root / "b")
    for payload in (
        {"operation": "read", "path": "a"},
        {"operation": "write", "path": "a/x", "content": "x"},
        {"operation": "append", "path": "b", "content": "x"},
    ):
        with pytest.raises(PermanentError, match="symbolic link"):
            _run(root, **payload)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("x" * 256, "longer than 255 bytes"),
        ("d/" + "é" * 128, "longer than 255 bytes"),
        ("a/" * 2000 + "f", "more than 128 components"),
        ("bad\ud800name", "UTF-8"),
        ("nul\0byte", "NUL"),
        ("/etc/passwd", "relative"),
        ("\\server\\share", "relative"),
        ("a/../b", "'..'"),
        ("a\\..\\b", "'..'"),
        ("dir/", "name a file"),
        (".", "name a file"),
    ],
)
def test_paths_that_can_never_work_are_refused_at_submission_and_on_the_worker(
    root: Path, path: str, message: str
) -> None:
    for operation, extra in (("write", {"content": "x"}), ("copy", {"destination": "ok"})):
        with pytest.raises(ValidationError) as excinfo:
            file.FilePayloadSchema().load({"operation": operation, "path": path, **extra})
        assert excinfo.value.messages == {
            "path": [pytest.approx(excinfo.value.messages["path"][0])]
        }
        assert message in excinfo.value.messages["path"][0]
        with pytest.raises(PermanentError, match="path"):
            _run_unchecked(root, operation=operation, path=path, **extra)
    with pytest.raises(ValidationError) as excinfo:
        file.FilePayloadSchema().load({"operation": "move", "path": "ok", "destination": path})
    assert list(excinfo.value.messages) == ["destination"]
    assert os.listdir(root) == []


def test_deep_but_legal_paths_work(root: Path) -> None:
    path = "d/" * (file_sandbox.MAX_DEPTH - 1) + "f"
    _run(root, operation="write", path=path, content="deep")
    assert _run(root, operation="read", path=path)["content"] == "deep"


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
        ({"operation": "write", "path": "a", "content": "lone \ud800 surrogate"}, "content"),
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


def test_swapping_in_symlinks_during_jobs_never_reaches_outside(root: Path, outside: Path) -> None:
    """2,000 operations while another process swaps ``f`` and ``d`` for links to
    ``outside``: nothing outside is read, written, created or removed."""
    sandbox_attack.prepare(root, outside)
    before = _snapshot(outside), sorted(os.listdir(outside))
    outcomes = {"ok": 0, "refused": 0}
    leaked: list[dict] = []
    attacker = sandbox_attack.start_attacker(root, outside)
    try:
        for i in range(2000):
            try:
                result = _run(root, **sandbox_attack.race_job(i))
            except PermanentError:
                outcomes["refused"] += 1
                continue
            outcomes["ok"] += 1
            if sandbox_attack.leaks(result):
                leaked.append(result)
    finally:
        attacker.kill()
        attacker.wait(10)
    assert leaked == []
    assert (_snapshot(outside), sorted(os.listdir(outside))) == before
    assert not any(sandbox_attack.SECRET.encode() in data for data in _snapshot(root).values())
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes  # the race did happen
