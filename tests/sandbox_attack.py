"""A local attacker for the ``file`` executor's race tests: another process that
swaps ``<root>/f`` and ``<root>/d`` for symlinks pointing outside the root, in a
tight loop, while jobs run; and the jobs that would escape if it won a race.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

SECRET = "SECRET-CONTENT-OUTSIDE-THE-ROOT"

_ATTACKER = r"""
import os, shutil, sys
root, outside = sys.argv[1], sys.argv[2]
f, d = os.path.join(root, "f"), os.path.join(root, "d")
first = True
while True:
    for step in (
        lambda: os.symlink(os.path.join(outside, "secret.txt"), f + ".link"),
        lambda: os.replace(f + ".link", f),  # the file is now a link out of the root
        lambda: os.rename(d, d + ".real"),
        lambda: os.symlink(outside, d),  # the directory is now a link out of the root
        lambda: open(f + ".new", "w").write("inside"),
        lambda: os.replace(f + ".new", f),
        lambda: os.path.islink(d) and os.unlink(d),
        lambda: os.rename(d + ".real", d),
        lambda: os.path.isdir(d + ".real") and shutil.rmtree(d + ".real"),
    ):
        try:
            step()
        except OSError:
            pass
    if first:
        print("ready", flush=True)
        first = False
"""


def prepare(root: Path, outside: Path) -> None:
    """The secret outside, and the file and directory the attacker swaps."""
    (outside / "secret.txt").write_text(SECRET)
    (root / "d").mkdir(exist_ok=True)
    (root / "f").write_text("inside")


def start_attacker(root: Path, outside: Path) -> subprocess.Popen:
    """Start the attacker and wait until it has swapped once; the caller kills it."""
    attacker = subprocess.Popen(
        [sys.executable, "-c", _ATTACKER, str(root), str(outside)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert attacker.stdout is not None and attacker.stdout.readline() == "ready\n"
    return attacker


def race_job(i: int) -> dict:
    """The i-th job of a race: reads, writes, copies, moves and deletes through f and d."""
    jobs = [
        {"operation": "read", "path": "f"},
        {"operation": "read", "path": "d/secret.txt"},
        {"operation": "checksum", "path": "d/secret.txt"},
        {"operation": "write", "path": "d/secret.txt", "content": f"pwned {i}"},
        {"operation": "append", "path": "f", "content": "pwned"},
        {"operation": "write", "path": "d/new.txt", "content": "pwned"},
        {"operation": "copy", "path": "d/secret.txt", "destination": "stolen.txt"},
        {"operation": "copy", "path": "f", "destination": "d/secret.txt"},
        {"operation": "move", "path": "d/secret.txt", "destination": "moved.txt"},
        {"operation": "move", "path": "f", "destination": "d/secret.txt"},
        {"operation": "delete", "path": "d/secret.txt"},
        {"operation": "delete", "path": "f"},
        {"operation": "write", "path": "f", "content": "inside"},
    ]
    return jobs[i % len(jobs)]


def snapshot(path: Path) -> dict[str, bytes]:
    """The regular files under ``path`` and their content; links are not followed."""
    found = {}
    for folder, _, names in os.walk(path):
        for name in names:
            entry = Path(folder, name)
            if entry.is_file() and not entry.is_symlink():
                found[str(entry.relative_to(path))] = entry.read_bytes()
    return found


def leaks(result: dict) -> bool:
    """Whether a job's result shows the secret (read content or checksum)."""
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    return SECRET in str(result.get("content", "")) or result.get("sha256") == digest
