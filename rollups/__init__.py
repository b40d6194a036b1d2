"""Hourly per-merchant rollups: scheduled recomputation of changed (merchant, hour) buckets."""
