"""The job engine: intake, attempts, job operations, upkeep and what they share.

It speaks to storage and is driven by the HTTP layer and the housekeeper; it imports
nothing from ``taskframe.server.http``."""
