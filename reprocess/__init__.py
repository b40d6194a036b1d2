"""Reprocessing: replay Kafka history (or _reindex) into a new index generation, verify it,
switch the read alias atomically, rebuild rollups, and keep the old generation for rollback."""
