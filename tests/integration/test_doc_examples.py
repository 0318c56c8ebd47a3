"""The documentation's examples, run as written, top to bottom, against a live server.

Each page (the README, and every page under ``docs/getting-started``,
``docs/tutorials`` and ``docs/how-to``) gets a fresh folder, a fresh SQLite
database and a real ``taskframe-server --standalone`` on a free port; its
``sh``/``bash`` blocks run with ``bash -e`` and its ``python`` blocks with
Python, in page order, in that folder. ``localhost:8000`` and ``127.0.0.1:8000``
(and any other ``localhost:NNNN``) are rewritten to the test's ports, and
``taskframe`` finds the server through ``TASKFRAME_URL``.

What a reader would do in another terminal, or cannot do here, is marked by an
HTML comment on the line before the block (invisible on the rendered page):

- ``<!-- example: server -->``: the block starts the server; it runs in the
  background in place of the default one, and the page goes on once
  ``/health`` answers;
- ``<!-- example: background -->``: runs in the background until the page ends
  (a worker, a webhook receiver);
- ``<!-- example: skip -->``, ``postgres``, ``nginx``, ``docker``: not run
  (long-running commands, other hosts, services this test does not start).

A block with ``title="path"`` is a file: it is written to that path. A line
``--8<-- "path"`` in a block is replaced by that file of the repository, as
the docs build does (write such a block's fence as ``{.python title="..."}``:
ruff formats Markdown's ``python`` blocks and would mangle the line). An answer
shown after a command as a ``# {...}`` comment is checked loosely: each
``"key": value`` pair in it (strings, integers, booleans, null; not floats or
times; ``...`` stands for any text) must occur in the command's JSON output.

Every page runs in a virtualenv of its own that sees this one's packages, so a
``pip install`` in an example installs there and never into the test
environment (it builds with a recent setuptools installed once, without build
isolation, and no package index).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from taskframe.testing.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: The README is the user's door: it stays short (the rest is in the docs site).
README_MAX_LINES = 200
FOLDERS = ("getting-started", "tutorials", "how-to")
SKIP_MARKERS = {"skip", "postgres", "nginx", "docker"}
MARKERS = SKIP_MARKERS | {"server", "background"}
BLOCK_TIMEOUT = 60.0
IGNORED = shutil.ignore_patterns("__pycache__", "*.egg-info", ".pytest_cache", "build", "dist")

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*example:\s*(?P<kind>[a-z]+)(?P<why>[^>]*)-->\s*$")
_TITLE = re.compile(r'title="(?P<path>[^"]+)"')
_SNIPPET = re.compile(r'^(?P<indent>\s*)--8<--\s+"(?P<path>[^"]+)"\s*$')
_HOST_PORT = re.compile(r'(?P<host>localhost|127\.0\.0\.1)(?P<sep>:|", )(?P<port>\d{4,5})\b')
_PAIR = re.compile(
    r'"(?P<key>[A-Za-z_][\w-]*)":\s*(?P<value>"(?:[^"\\]|\\.)*"|true|false|null|-?\d+(?:\.\d+)?)'
)
_TIME = re.compile(r"^\d{4}-\d\d-\d\d[T ]")


@dataclass
class Block:
    page: Path
    line: int
    language: str
    text: str
    marker: str = ""
    why: str = ""
    title: str = ""

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        if self.title:
            return "file"
        if self.language in ("sh", "bash", "shell"):
            return "shell"
        if self.language in ("python", "py"):
            return "python"
        return ""


def pages() -> list[Path]:
    found = [README]
    for folder in FOLDERS:
        found.extend(sorted((ROOT / "docs" / folder).glob("*.md")))
    return found


def test_the_readme_fits_on_a_few_screens():
    assert len(README.read_text().splitlines()) <= README_MAX_LINES


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page`` with the marker on the line before each."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    marker, why = "", ""
    index = 0
    while index < len(lines):
        line = lines[index]
        match = _MARKER.match(line)
        if match:
            marker, why = match["kind"], match["why"].strip().strip("()").strip()
            if marker not in MARKERS:
                raise AssertionError(f"{page}:{index + 1}: unknown example marker {marker!r}")
            index += 1
            continue
        fence = _FENCE.match(line)
        if not fence:
            if line.strip():
                marker, why = "", ""  # a marker applies to the block right after it
            index += 1
            continue
        indent, close = fence["indent"], fence["fence"]
        info = fence["info"].strip()
        body: list[str] = []
        start = index + 1
        index += 1
        while index < len(lines) and lines[index].strip() != close:
            body.append(
                lines[index][len(indent) :] if lines[index].startswith(indent) else lines[index]
            )
            index += 1
        title = _TITLE.search(info)
        found.append(
            Block(
                page=page,
                line=start,
                language=info.split()[0].lstrip("{.").rstrip("}") if info else "",
                text=_expand_snippets("\n".join(body)) + "\n",
                marker=marker,
                why=why,
                title=title["path"] if title else "",
            )
        )
        marker, why = "", ""
        index += 1
    return found


def _expand_snippets(text: str) -> str:
    def expand(line: str) -> str:
        match = _SNIPPET.match(line)
        if not match:
            return line
        content = (ROOT / match["path"]).read_text().rstrip("\n")
        return "\n".join(match["indent"] + part for part in content.splitlines())

    return "\n".join(expand(line) for line in text.splitlines())


# -- shell blocks: statements and the answers shown after them ---------------------------------


def statements(text: str) -> list[tuple[str, str]]:
    """(statement, the ``# {...}`` answer shown right after it, or "") in order."""
    found: list[list[str]] = []
    current: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            if found and stripped.startswith("# ") and stripped[2:3] in "{[" and not found[-1][1]:
                shown = [stripped[2:]]
                while _unbalanced(" ".join(shown)) and index + 1 < len(lines):
                    index += 1
                    shown.append(lines[index].strip().removeprefix("#").strip())
                found[-1][1] = " ".join(shown)
            index += 1
            continue
        current.append(line)
        joined = "\n".join(current)
        if not line.endswith("\\") and _complete(joined):
            found.append([joined, ""])
            current = []
        index += 1
    if current:
        found.append(["\n".join(current), ""])
    return [(statement, shown) for statement, shown in found]


def _complete(command: str) -> bool:
    try:
        shlex.split(command, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return command.count("$(") <= command.count(")") and not command.rstrip().endswith(("&&", "|"))


def _unbalanced(text: str) -> bool:
    return text.count("{") + text.count("[") > text.count("}") + text.count("]")


def instrumented(text: str, out_dir: Path) -> tuple[str, list[tuple[int, str, str]]]:
    """The block, each statement with a shown answer saving its output to a file."""
    script, checks = [], []
    for number, (statement, shown) in enumerate(statements(text)):
        if shown:
            path = out_dir / f"{number}.out"
            script.append(f'{{ {statement}\n}} > "{path}"\ncat "{path}"; echo')
            checks.append((number, statement, shown))
        else:
            script.append(statement)
    return "\n".join(script) + "\n", checks


def expected_pairs(shown: str) -> list[tuple[str, object]]:
    pairs = []
    for match in _PAIR.finditer(shown):
        value = json.loads(match["value"])
        if isinstance(value, float) or (isinstance(value, str) and _TIME.match(value)):
            continue  # durations and times differ from run to run
        pairs.append((match["key"], value))
    return pairs


def _values(data: object, key: str) -> Iterator[object]:
    if isinstance(data, dict):
        for name, value in data.items():
            if name == key:
                yield value
            yield from _values(value, key)
    elif isinstance(data, list):
        for item in data:
            yield from _values(item, key)


def _matches(actual: object, expected: object) -> bool:
    if isinstance(expected, str) and isinstance(actual, str):
        parts = [part for part in re.split(r"\.\.\.|…", expected) if part]
        position = 0
        for part in parts:
            found = actual.find(part, position)
            if found < 0:
                return False
            position = found + len(part)
        return True
    if isinstance(expected, bool) or expected is None:
        return actual is expected
    return actual == expected and not isinstance(actual, bool)


def check_answer(output: str, shown: str, where: str) -> None:
    try:
        actual = json.loads(output)
    except ValueError:
        raise AssertionError(f"{where}: the doc shows JSON ({shown}) but got: {output!r}") from None
    for key, value in expected_pairs(shown):
        seen = list(_values(actual, key))
        assert any(_matches(got, value) for got in seen), (
            f'{where}: the doc shows "{key}": {json.dumps(value)}, the answer has '
            f"{json.dumps(seen) if seen else 'no such key'}:\n{output}"
        )


# -- one page's world: a folder, a virtualenv, a server, background processes ------------------


@pytest.fixture(scope="session")
def build_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recent setuptools, installed once, that the examples' ``pip install`` builds with
    (no build isolation: an isolated build would fetch and install setuptools each time)."""
    folder = tmp_path_factory.mktemp("build-tools")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--target", str(folder), "setuptools>=70.1"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    return folder


def page_venv(folder: Path, build_tools: Path) -> Path:
    """A virtualenv that sees this environment's packages (through a .pth) and installs into
    its own site-packages; the commands are scripts like pip's, on its Python."""
    venv = folder / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sysconfig.get_paths()["purelib"]
    Path(purelib, "_taskframe_docs_test.pth").write_text(
        f"{build_tools}\nimport site; site.addsitedir({ours!r})\n"
    )
    commands = {
        "taskframe": "taskframe.client.cli",
        "taskframe-server": "taskframe.standalone",
        "taskframe-worker": "taskframe.worker.cli",
    }
    for name, module in commands.items():
        script = venv / "bin" / name
        # As pip writes them: the guard matters to multiprocessing's spawn and forkserver.
        script.write_text(
            f"#!{python}\nimport sys\nfrom {module} import main\n\n"
            "if __name__ == '__main__':\n    sys.exit(main())\n"
        )
        script.chmod(0o755)
    pip = venv / "bin" / "pip"
    pip.write_text(f'#!/bin/sh\nexec "{python}" -m pip "$@"\n')
    pip.chmod(0o755)
    return venv


@dataclass
class PageRun:
    page: Path
    folder: Path
    venv: Path
    port: int = field(default_factory=free_port)
    ports: dict[str, int] = field(default_factory=dict)
    server: subprocess.Popen | None = None
    background: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    count: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFRAME_", "PIP_"))}
        env.update(
            PATH=f"{self.venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            VIRTUAL_ENV=str(self.venv),
            TASKFRAME_URL=self.url,
            TASKFRAME_PORT=str(self.port),
            # Examples install local folders only; builds use the page's setuptools.
            PIP_NO_INDEX="1",
            PIP_NO_BUILD_ISOLATION="0",  # pip reads "0" as: do not isolate
            PIP_DISABLE_PIP_VERSION_CHECK="1",
        )
        return env

    def rewrite(self, text: str) -> str:
        def port_for(match: re.Match) -> str:
            port = match["port"]
            if port == "8000":
                new = self.port
            else:
                new = self.ports.setdefault(port, free_port())
            return f"{match['host']}{match['sep']}{new}"

        text = _HOST_PORT.sub(port_for, text)
        return re.sub(r"--port 8000\b", f"--port {self.port}", text)

    def spawn(self, block: Block, name: str) -> tuple[subprocess.Popen, Path]:
        self.count += 1
        log = self.folder / f".{name}-{self.count}.log"
        if block.kind == "python":
            script = self.folder / f".example-{self.count}.py"
            script.write_text(self.rewrite(block.text))
            command = [str(self.venv / "bin" / "python"), str(script)]
        else:
            command = ["bash", "-e", "-c", self.rewrite(block.text)]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                command,
                cwd=self.folder,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its children too are stopped with it
            )
        return process, log

    def start_server(self, block: Block) -> None:
        self.stop_server()
        self.server, log = self.spawn(block, "server")
        deadline = time.monotonic() + 30
        while True:
            if self.server.poll() is not None:
                raise AssertionError(f"{block.where}: the server exited:\n{log.read_text()}")
            try:
                if requests.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{block.where}: no server on {self.url}:\n{log.read_text()}")
            time.sleep(0.05)
        self.background.append((self.server, log))

    def stop_server(self) -> None:
        if self.server is not None:
            _stop(self.server)
            self.server = None

    def run(self, block: Block) -> None:
        if block.kind == "file":
            target = self.folder / block.title
            if not target.resolve().is_relative_to(self.folder.resolve()):
                raise AssertionError(f"{block.where}: {block.title} is outside the page's folder")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            return
        if block.marker == "server":
            self.start_server(block)
            return
        if block.marker == "background":
            self.background.append(self.spawn(block, "background"))
            return
        if self.server is None:
            self.start_server(DEFAULT_SERVER)
        if block.kind == "python":
            script = self.folder / f".example-{block.line}.py"
            script.write_text(self.rewrite(block.text))
            command = [str(self.venv / "bin" / "python"), str(script)]
            checks: list[tuple[int, str, str]] = []
            source = block.text
        else:
            out_dir = self.folder / f".outputs-{block.line}"
            out_dir.mkdir()
            source, checks = instrumented(self.rewrite(block.text), out_dir)
            command = ["bash", "-e", "-c", source]
        try:
            done = subprocess.run(
                command,
                cwd=self.folder,
                env=self.env(),
                capture_output=True,
                text=True,
                timeout=BLOCK_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"{block.where}: still running after {BLOCK_TIMEOUT:.0f} s:\n"
                f"{exc.stdout}\n{exc.stderr}"
            ) from None
        self.log.append(f"--- {block.where}\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, (
            f"{block.where}: exit code {done.returncode}\n--- block as run:\n{source}\n"
            f"--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}\n{self.server_log()}"
        )
        for number, statement, shown in checks:
            output = (out_dir / f"{number}.out").read_text()
            check_answer(output, shown, f"{block.where}: `{statement.strip()}`")

    def server_log(self) -> str:
        """The tails of what the server and the background processes logged."""
        return "".join(
            f"--- {log.name}:\n{log.read_text(errors='replace')[-3000:]}\n"
            for _, log in self.background
        )

    def close(self) -> None:
        for process, _ in reversed(self.background):
            _stop(process)


DEFAULT_SERVER = Block(Path("(default)"), 0, "sh", "taskframe-server --standalone\n", "server")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to its process group, then SIGKILL: nothing is left running."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


# -- the tests ---------------------------------------------------------------------------------


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.timeout(180)
@pytest.mark.parametrize("page", pages(), ids=_page_id)
def test_examples_run_as_written(page: Path, tmp_path: Path, build_tools: Path) -> None:
    found = blocks(page)
    runnable = [b for b in found if b.kind and b.marker not in SKIP_MARKERS]
    if not runnable:
        pytest.skip(f"{_page_id(page)} has no runnable example")
    folder = tmp_path / "work"
    folder.mkdir()
    # Repository paths the docs use (deploy/make-tokens, examples/...), as in a checkout:
    # copies, so that nothing an example writes or installs can change the repository.
    for name in ("deploy", "examples"):
        shutil.copytree(ROOT / name, folder / name, symlinks=True, ignore=IGNORED)
    run = PageRun(page, folder, page_venv(folder, build_tools))
    try:
        for block in found:
            if block.kind and block.marker not in SKIP_MARKERS:
                run.run(block)
    finally:
        run.close()
    skipped = [
        f"{b.where} ({b.marker}{': ' + b.why if b.why else ''})"
        for b in found
        if b.kind and b.marker in SKIP_MARKERS
    ]
    print(f"{_page_id(page)}: {len(runnable)} blocks run; not run: {', '.join(skipped) or 'none'}")


def test_the_statement_splitter_keeps_multi_line_commands_whole() -> None:
    text = (
        "curl -s -X POST localhost:8000/jobs -H 'Content-Type: application/json' \\\n"
        '     -d \'{"type": "sleep",\n'
        '          "payload": {"duration": 0}}\'\n'
        '# {"id": 1, "status": "queued", ...}\n'
        "\n"
        "# a comment\n"
        "TOKEN=$(cat secrets/client)\n"
    )
    found = statements(text)
    assert [shown for _, shown in found] == ['{"id": 1, "status": "queued", ...}', ""]
    assert found[0][0].count("\n") == 2 and found[1][0] == "TOKEN=$(cat secrets/client)"


def test_the_answer_check_is_loose_but_can_fail() -> None:
    shown = (
        '{"id": 5, ..., "status": "cancelled", "error": "cancelled on request (...)", "slept": 2.1}'
    )
    answer = {"id": 5, "status": "cancelled", "error": "cancelled on request (SleepCancelled: x)"}
    check_answer(json.dumps(answer), shown, "here")
    with pytest.raises(AssertionError, match='"status": "cancelled"'):
        check_answer(json.dumps({**answer, "status": "queued"}), shown, "here")
    with pytest.raises(AssertionError, match="shows JSON"):
        check_answer("not json", shown, "here")
