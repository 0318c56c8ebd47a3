"""``taskframe`` when something is wrong: exit 2 for bad usage, 1 for a refusal or no
server, one line on stderr naming the option or the field; tokens; the progress line."""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from taskframe.client import cli
from taskframe.client.cli import Progress, main
from taskframe.client.models import Job
from taskframe.server.http.access import AccessConfig
from taskframe.server.http.auth import TokenSet
from tests.api_server import ApiServer, Mounted, migrated_copy
from tests.fake_api import dead_url

pytestmark = pytest.mark.timeout(30)

CLIENT_TOKEN = "client-token-0123456789"


@pytest.fixture(autouse=True)
def no_taskframe_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TASKFRAME_"):
            monkeypatch.delenv(name)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """``run(*argv)``: ``main(argv)``'s exit code, stdout and stderr."""

    def run_main(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run_main


# -- bad usage: exit 2, nothing sent -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "sleep", "--payload", "{bad"], "--payload: the text given is not valid JSON"),
        (
            ["submit", "sleep", "--payload", "[1]"],
            "--payload: the text given must hold a JSON object",
        ),
        (
            ["submit", "sleep", "--payload", "@/nonexistent.json"],
            "--payload: cannot read /nonexistent.json",
        ),
        (
            ["submit", "sleep", "--priority", "high"],
            "argument --priority: invalid int value: 'high'",
        ),
        (["submit", "sleep", "--depends-on", "1,x"], "not comma-separated job ids: '1,x'"),
        (["submit", "sleep", "--on-dependency-failure", "ignore"], "invalid choice: 'ignore'"),
        (["get", "abc"], "argument id: invalid int value: 'abc'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["set-limit", "host", "x", "1"], "invalid choice: 'host'"),
        (["list", "--limit", "0"], "--limit must be at least 1"),
    ],
)
def test_bad_usage_exits_2_naming_the_option(run, args: list[str], message: str) -> None:
    # A URL where nothing listens: a usage error must be found before any request.
    code, out, err = run("--url", dead_url(), *args)
    assert (code, out) == (2, "")
    assert message in err
    assert "cannot reach" not in err


@pytest.mark.parametrize(
    "payload", ['{"duration": NaN}', '{"duration": 1e400}', '{"a": [-Infinity]}']
)
def test_a_payload_with_nan_or_infinity_is_not_json_and_exits_2(run, payload: str) -> None:
    """Python's json reads NaN, Infinity and 1e400 (an infinite float): the command
    accepted them, and the request then failed with exit 1 instead of the usage error."""
    code, out, err = run("--url", dead_url(), "submit", "sleep", "--payload", payload)
    assert (code, out) == (2, "")
    assert err.startswith("taskframe: error: --payload: the text given is not valid JSON")


def test_an_empty_payload_file_and_one_that_is_a_folder(run, tmp_path: Path) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("")
    code, _, err = run("--url", dead_url(), "submit", "sleep", "--payload", f"@{empty}")
    assert code == 2 and f"--payload: {empty} is not valid JSON" in err
    code, _, err = run("--url", dead_url(), "submit", "sleep", "--payload", f"@{tmp_path}")
    assert code == 2 and f"--payload: cannot read {tmp_path}: Is a directory" in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:8000", "--url: 'localhost:8000' is not an http:// or https:// URL"),
        ("http://user@example.org", "--url: 'http://user@example.org': a server URL has no user"),
        ("http://example.org:port", "--url: 'http://example.org:port': Port could not be cast"),
    ],
)
def test_a_bad_url_exits_2(run, url: str, message: str) -> None:
    code, out, err = run("--url", url, "types")
    assert (code, out) == (2, "")
    assert err.strip().startswith(f"taskframe: error: {message}")


def test_token_options(run, tmp_path: Path) -> None:
    url = dead_url()
    code, _, err = run("--url", url, "--token", "a" * 20, "--token-file", "/x", "types")
    assert code == 2 and "give --token or --token-file, not both" in err
    empty = tmp_path / "empty"
    empty.write_text("  \n")
    code, _, err = run("--url", url, "--token-file", str(empty), "types")
    assert code == 2 and f"--token-file: the token file {empty} is empty" in err
    code, _, err = run("--url", url, "--token-file", str(tmp_path / "missing"), "types")
    assert code == 2 and "--token-file: cannot read the token file" in err


def test_a_ca_cert_that_cannot_be_used_is_named_as_such(run, tmp_path: Path) -> None:
    """A CA file that is not PEM was reported as a problem of --url."""
    code, _, err = run("--url", "https://127.0.0.1:1", "--ca-cert", str(tmp_path), "types")
    assert code == 2 and f"--ca-cert: {tmp_path} is not a file" in err
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    code, _, err = run("--url", "https://127.0.0.1:1", "--ca-cert", str(bad), "types")
    assert code == 2
    assert err.startswith(f"taskframe: error: --ca-cert: cannot load the CA certificates in {bad}")
    assert "--url" not in err


# -- refusals and no server: exit 1, one line -------------------------------------------------


def test_no_server_is_one_line_naming_the_url(run) -> None:
    url = dead_url()
    code, out, err = run("--url", url, "cancel", "1")  # a POST: not retried
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"error: cannot reach {url}: connection refused"]


def test_a_refused_submission_names_each_field(run, api: Mounted) -> None:
    code, out, err = run("--url", api.url, "submit", "sleep", "--payload", '{"duration": -1}')
    assert (code, out) == (1, "")
    assert err == "error: payload.duration: must be between 0 and 86400.0 seconds\n"
    code, _, err = run("--url", api.url, "submit", "nope")
    assert code == 1 and err.startswith("error: type: unknown job type 'nope'; installed types:")


def test_flags_after_the_command_win_over_those_before(run, api: Mounted) -> None:
    code, out, _ = run("--url", dead_url(), "types", "--url", api.url, "--json")
    assert code == 0 and '"name": "sleep"' in out


def test_url_and_json_from_the_environment(run, api: Mounted, monkeypatch) -> None:
    monkeypatch.setenv("TASKFRAME_URL", api.url)
    monkeypatch.setenv("TASKFRAME_JSON", "yes")
    code, out, _ = run("stats")
    assert code == 0 and out.startswith("{") and '"by_status"' in out


def test_ctrl_c_exits_130(run, api: Mounted, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(client: object, options: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli.COMMANDS, "stats", interrupted)
    assert run("--url", api.url, "stats") == (130, "", "\n")


# -- tokens ---------------------------------------------------------------------------------


@pytest.fixture
def secured(api_server: ApiServer, sqlite_template: Path, tmp_path: Path) -> Iterator[Mounted]:
    """An app that wants a token: ``client:CLIENT_TOKEN``."""
    tokens = TokenSet()
    tokens.add_lines([f"client:{CLIENT_TOKEN}"], "tokens")
    db = migrated_copy(sqlite_template, tmp_path / "secured.db")
    yield api_server.mount(db, access=AccessConfig(tokens=tokens))
    api_server.unmount()


def test_the_token_is_sent_from_an_option_a_file_or_the_environment(
    run, secured: Mounted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run("--url", secured.url, "types")
    assert code == 1 and err.startswith("error: Unauthorized: ")
    assert run("--url", secured.url, "--token", CLIENT_TOKEN, "types")[0] == 0
    token_file = tmp_path / "token"
    token_file.write_text(f"{CLIENT_TOKEN}\n")
    assert run("--url", secured.url, "types", "--token-file", str(token_file))[0] == 0
    monkeypatch.setenv("TASKFRAME_TOKEN", CLIENT_TOKEN)
    assert run("--url", secured.url, "types")[0] == 0
    # A role the token lacks: 403, in one line.
    code, _, err = run("--url", secured.url, "pause-queue", "default")
    assert code == 1 and err.startswith("error: Forbidden: ")


# -- the progress line ------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def job(status: str, attempts: int = 0) -> Job:
    return Job(id=7, type="sleep", status=status, attempts=attempts)


def test_progress_on_a_terminal_rewrites_one_line_in_place() -> None:
    terminal = Terminal()
    progress = Progress(7, terminal)
    assert progress.tty
    for status, attempts in [("queued", 0), ("running", 1), ("running", 1), ("succeeded", 1)]:
        progress.update(job(status, attempts))
    progress.end()
    text = terminal.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    shown = [part.rstrip() for part in text.strip().split("\r")]
    assert [s.split(" (")[0] for s in shown] == ["job 7: queued"] + ["job 7: running"] * 2 + [
        "job 7: succeeded"
    ]
    assert shown[-1].endswith(", attempt 1)")
    # A shorter line blanks out what the longer one before it left.
    assert all(
        len(part) >= len(prev.rstrip())
        for prev, part in zip(text.split("\r")[1:], text.split("\r")[2:], strict=False)
    )


def test_progress_in_a_log_is_one_line_per_status() -> None:
    stream = io.StringIO()
    progress = Progress(7, stream)
    for status in ("queued", "queued", "running", "running", "succeeded"):
        progress.update(job(status))
    progress.end()
    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "job 7: queued",
        "job 7: running",
        "job 7: succeeded",
    ]


def test_progress_on_a_terminal_shows_the_jobs_progress_bar_within_the_width(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "60")
    terminal = Terminal()
    progress = Progress(7, terminal)
    running = {"fraction": 0.5, "message": "half of the images " + "x" * 50}
    progress.update(Job(id=7, type="t", status="running", attempts=1, progress=running))
    progress.update(Job(id=7, type="t", status="succeeded", attempts=1, progress={"fraction": 0.9}))
    progress.end()
    shown = [part.rstrip() for part in terminal.getvalue().strip().split("\r")]
    assert shown[0].startswith("job 7: running [##########----------]  50% half of the")
    assert len(shown[0]) == 59  # cut to one screen line, or \r could not rewrite it
    # Succeeded: a full bar, whatever the last report said.
    assert shown[1].startswith("job 7: succeeded [####################] 100% (")
