"""The rollup document: the contract between the rollup job (writer) and the API (reader).

One document per merchant x UTC hour x combination of the rollup dimensions. Its ``_id`` is
deterministic (hash of merchant, hour and dimension values), so re-runs overwrite.
Dimension values that the event did not carry are stored as ``MISSING`` so that
filters and groupings can treat "no value" explicitly and terms aggregations never drop docs.
"""

from __future__ import annotations

# Rollup dimensions, in the order of DESIGN.md's Dimension enum; names equal raw field names.
DIMENSIONS: tuple[str, ...] = (
    "event_type",
    "status",
    "payment_method",
    "store_id",
    "country",
    "channel",
    "device",
)
MISSING = "__none__"

# Fields of a rollup document.
MERCHANT = "merchant_id"
HOUR = "hour"  # date: start of the UTC hour, epoch millis
EVENTS = "events"  # long: count of raw events
PAYMENTS_SUCCEEDED = "payments_succeeded"  # long
PAYMENTS_FAILED = "payments_failed"  # long
GROSS_MILLI = "gross_milli"  # long: sum of amount_milli of succeeded payments
REFUNDS_MILLI = "refunds_milli"  # long: sum of amount_milli of refunds
CUSTOMERS_SKETCH = "customers_hll"  # binary: serialized HLL sketch of customer_hash values
COMPUTED_AT = "computed_at"  # date: when the job wrote this document
SOURCE_MAX_INGESTED_AT = "source_max_ingested_at"  # date: newest raw ingested_at it includes
GENERATION = "generation"  # keyword: raw generation it was computed from
