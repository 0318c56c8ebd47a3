"""The built-in executors (``sleep``, ``http``, ``file``), one plugin module each."""
