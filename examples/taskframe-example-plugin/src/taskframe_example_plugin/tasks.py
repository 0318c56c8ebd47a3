"""``whisper``: a job type written as a plain function (published by one entry-point line)."""

from __future__ import annotations

from taskframe.core import current_job, task


@task(max_attempts=2)
def whisper(text: str, times: int = 1) -> str:
    """Lower-case a text `times` times."""
    current_job().logger.info("whispering %d time(s)", times)
    return " ".join([text.lower() + "..."] * times)
