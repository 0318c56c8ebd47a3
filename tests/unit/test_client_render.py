"""The taskframe command's text output: aligned columns, one line per row, errors in one line."""

from __future__ import annotations

from taskframe.client.cli import error_line
from taskframe.client.errors import NotFound, Unavailable, ValidationError
from taskframe.client.models import Stats
from taskframe.client.render import MAX_CELL, stats_text, table


def test_columns_are_aligned_and_cells_kept_on_one_line() -> None:
    text = table(("ID", "ERROR"), [(1, "short"), (12345, "two\nlines"), (7, "x" * 200)])
    lines = text.splitlines()
    assert lines[0] == "ID     ERROR"
    assert lines[1] == "1      short"
    assert lines[2] == "12345  two lines"
    assert len(lines[3]) == len("7      ") + MAX_CELL and lines[3].endswith("…")


def test_none_and_lists_have_a_visible_form() -> None:
    assert table(("A", "B"), [(None, ["x", "y"]), ([], "z")]).splitlines()[1:] == [
        "-  x,y",
        "-  z",
    ]


def test_stats_table_has_a_column_per_status_and_a_total_row() -> None:
    stats = Stats.from_json(
        {
            "by_status": {"queued": 3, "failed": 1},
            "by_type": {"http": {"queued": 1, "failed": 1}, "sleep": {"queued": 2}},
            "oldest_ready_age": 12.34,
            "stuck_types": ["http"],
            "workers_alive": 0,
        }
    )
    lines = stats_text(stats).splitlines()
    assert lines[:4] == [
        "TYPE   QUEUED  FAILED",
        "http   1       1",
        "sleep  2       0",
        "(all)  3       1",
    ]
    assert "oldest ready job:          12.3 s" in lines
    assert "types with no live worker: http" in lines


def test_error_lines() -> None:
    invalid = ValidationError(
        "x", 422, errors={"payload": {"duration": ["Must be >= 0."]}, "priority": ["Too big."]}
    )
    assert error_line(invalid, "u") == "payload.duration: Must be >= 0.; priority: Too big."
    missing = NotFound("x", 404, title="Not found", description="job 9 does not exist")
    assert error_line(missing, "u") == "Not found: job 9 does not exist"
    down = Unavailable("http://h:1/jobs: connection refused", description="connection refused")
    assert error_line(down, "http://h:1") == "cannot reach http://h:1: connection refused"
