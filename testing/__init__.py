"""taskframe.testing: run a plugin's jobs through real taskframe processes in tests.

Loaded by pytest through the ``pytest11`` entry point (``taskframe.testing.fixtures``);
see the README's "Writing a plugin" section.
"""

from __future__ import annotations

from taskframe.testing.processes import FINISHED, TaskframeServer, TaskframeWorker, free_port

__all__ = ["FINISHED", "TaskframeServer", "TaskframeWorker", "free_port"]
