"""An example taskframe plugin: the ``shout`` job type."""
