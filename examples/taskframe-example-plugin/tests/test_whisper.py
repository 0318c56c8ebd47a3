"""The tasks module of the plugin: in-process with run_task, and live (taskframe's fixtures)."""

from __future__ import annotations

import pytest
from taskframe_example_plugin.tasks import whisper

from taskframe.client import ValidationError
from taskframe.testing import run_task


def test_whisper_in_process():
    assert run_task(whisper, text="HELLO", times=2) == "hello... hello..."
    with pytest.raises(ValidationError):
        run_task(whisper, text=3)


def test_whisper_through_a_server_and_a_worker(taskframe_client):
    # Published by its entry point: both processes have it without --tasks.
    assert taskframe_client.wait(taskframe_client.submit(whisper, text="Psst")) == "psst..."
