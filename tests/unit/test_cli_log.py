"""``taskframe log --follow`` prints each line once, whatever the server's log window did."""

from __future__ import annotations

from taskframe.client.cli import log_news


def test_new_text_goes_on_from_what_was_shown():
    assert log_news("", "a\n") == "a\n"
    assert log_news("a\n", "a\nb\n") == "b\n"
    assert log_news("a\nb\n", "a\nb\n") == ""


def test_a_moved_window_goes_on_from_the_end_of_what_was_shown():
    shown = "".join(f"line {i}\n" for i in range(100))
    window = shown[-300:] + "new 1\nnew 2\n"  # the server kept the tail only
    assert log_news(shown, window) == "new 1\nnew 2\n"


def test_a_new_attempt_is_printed_whole():
    assert log_news("first attempt\n", "second attempt\n") == "second attempt\n"
