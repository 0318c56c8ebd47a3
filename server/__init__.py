"""taskframe.server: the HTTP API, the scheduler and the storage backends."""
