"""Falcon resources, one module per audience: clients, workers, anyone."""
