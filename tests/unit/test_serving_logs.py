"""waitress's connection-limit lines are summed, not logged every time the limit flaps."""

from __future__ import annotations

import logging

from taskframe.server.http.channel import LimitLogFilter

REACHED = "total open connections reached the connection limit, no longer accepting new connections"
BELOW = "total open connections dropped below the connection limit, listening again"


def test_the_limit_lines_pass_once_a_period_with_a_count(caplog):
    log = logging.getLogger("test.waitress")
    limit = LimitLogFilter()
    log.addFilter(limit)
    try:
        with caplog.at_level(logging.INFO, logger="test.waitress"):
            for _ in range(5):
                log.warning(REACHED)
                log.info(BELOW)
            log.warning("server accept() threw an exception")  # others pass
            assert [r.getMessage() for r in caplog.records] == [
                REACHED,
                BELOW,
                "server accept() threw an exception",
            ]
            limit.since -= 3600  # a period later
            log.warning(REACHED)
            log.info(BELOW)
        assert (
            caplog.records[-2].getMessage().endswith("(and 4 more times since the last such line)")
        )
        assert caplog.records[-1].getMessage() == BELOW
    finally:
        log.removeFilter(limit)
