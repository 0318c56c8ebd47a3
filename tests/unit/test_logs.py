"""The shared logging setup and the capture of an attempt's log."""

from __future__ import annotations

import io
import json
import logging
import threading

import pytest

from taskframe.core.executor import Executor
from taskframe.core.logs import configure_logging, early_logging_options
from taskframe.core.schemas import MAX_ATTEMPT_LOG
from taskframe.worker.jobs import AttemptLogger, RunningJob


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


def test_json_lines_carry_the_job_fields(restore_logging):
    stream = io.StringIO()
    configure_logging("INFO", "json", stream)
    log = logging.getLogger("taskframe.test")
    log.info("job %d done", 7, extra={"job_id": 7, "type": "sleep", "attempt": 1})
    log.debug("hidden")
    try:
        raise ValueError("boom")
    except ValueError:
        log.warning("failed", exc_info=True)
    first, second = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert first["msg"] == "job 7 done" and first["level"] == "INFO"
    assert (first["job_id"], first["type"], first["attempt"]) == (7, "sleep", 1)
    assert first["logger"] == "taskframe.test" and first["ts"].endswith("+00:00")
    assert "worker_id" not in first
    assert "ValueError: boom" in second["exc_info"]


def test_early_options_read_flags_then_environment(monkeypatch):
    monkeypatch.setenv("TASKFRAME_LOG_FORMAT", "json")
    early = early_logging_options(["--log-level", "debug"])
    assert (early.log_level, early.log_format) == ("DEBUG", "json")
    monkeypatch.setenv("TASKFRAME_LOG_FORMAT", "xml")  # left to the full parser to refuse
    assert early_logging_options([]).log_format == "text"


def _running(job_id: int) -> RunningJob:
    job = {"id": job_id, "type": "t", "attempts": 1, "worker_id": "w", "lease_id": f"l-{job_id}"}
    return RunningJob(job, Executor("t", None, lambda p, c: None), None)  # type: ignore[arg-type]


def test_attempt_log_keeps_the_tail_within_the_cap():
    # (propagate off: these lines are not for the test's output)
    logger = AttemptLogger(_running(1))
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for n in range(2000):
        logger.info("line %05d %s", n, "x" * 60)
    text = logger.text()
    assert len(text) <= MAX_ATTEMPT_LOG
    assert text.endswith("line 01999 " + "x" * 60 + "\n")
    assert "line 00000" not in text
    one_huge = AttemptLogger(_running(2), limit=100)
    one_huge.propagate = False
    one_huge.warning("y" * 500 + "\x00end")
    assert len(one_huge.text()) == 100 and one_huge.text().endswith("\ufffdend\n")


def test_concurrent_attempts_of_one_type_capture_only_their_own_lines():
    loggers = {n: AttemptLogger(_running(n)) for n in range(4)}
    for logger in loggers.values():
        logger.setLevel(logging.INFO)
        logger.propagate = False

    def run(n: int) -> None:
        for i in range(50):
            loggers[n].info("job %d line %d", n, i)

    threads = [threading.Thread(target=run, args=(n,)) for n in loggers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, logger in loggers.items():
        lines = logger.text().splitlines()
        assert len(lines) == 50 and all(f"job {n} line" in line for line in lines)


@pytest.mark.parametrize("variable", ["TASKFRAME_LOG_LEVEL", "TASKFRAME_LOG_FORMAT"])
def test_a_bad_logging_variable_is_a_usage_error(variable, monkeypatch, capsys, restore_logging):
    from taskframe.worker.cli import main

    monkeypatch.setenv(variable, "verbose")
    assert main(["--api-url", "http://127.0.0.1:9"]) == 2  # refused while the options are built
    assert f"{variable}: invalid choice" in capsys.readouterr().err


def test_one_lease_request_carries_attempt_logs_up_to_its_budget():
    from taskframe.worker.outbox import BODY_RESERVE, Outbox

    outbox = Outbox(None, "w1", ["sleep"])  # type: ignore[arg-type]  # (never sends here)
    outbox.max_body = BODY_RESERVE + 600_000
    item = {"job_id": 1, "lease_id": "l", "status": "succeeded", "result": None, "error": None}
    for n in range(5):  # ~64 KiB of ASCII log each: about 2 × 64 KiB once escaped
        outbox.add({**item, "job_id": n, "log": "x\n" * 32_000})
    outbox.add({**item, "job_id": 9, "log": None})
    first = outbox._next_batch()
    assert [i["job_id"] for i in first] == [0, 1, 2, 3]  # 128,200 bytes each at most
    outbox.add({**item, "job_id": 10, "log": "\u00e9" * 64_000})  # 6 bytes a character
    outbox._remove(first)
    assert [i["job_id"] for i in outbox._next_batch()] == [4, 9, 10]
    assert [i["job_id"] for i in Outbox(None, "w", [])._next_batch()] == []  # type: ignore[arg-type]


def test_the_live_log_goes_until_acknowledged_and_stays_within_the_cap():
    running = _running(3)
    running.live_log = True
    logger = running.attempt_logger = AttemptLogger(running, limit=100)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    assert running.heartbeat_item() == {"job_id": 3, "lease_id": "l-3"} and not running.has_news()
    logger.info("one")
    assert running.has_news()
    first = running.heartbeat_item()
    assert first["log"].endswith("INFO one\n")
    logger.info("two")
    again = running.heartbeat_item()  # the first was not acknowledged: it goes again
    assert again["log"].startswith(first["log"]) and again["log"].endswith("INFO two\n")
    running.acked(again)
    assert "log" not in running.heartbeat_item()
    for n in range(20):
        logger.info("line %d", n)
    rest = running.heartbeat_item()["log"]
    assert len(first["log"]) + len(again["log"]) - len(first["log"]) + len(rest) == 100


def test_no_live_log_unless_the_server_takes_it():
    running = _running(4)  # live_log False: the server would refuse the field
    logger = running.attempt_logger = AttemptLogger(running)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.info("kept for the outcome only")
    assert "log" not in running.heartbeat_item() and not running.has_news()
    assert "kept for the outcome only" in (logger.text() or "")
