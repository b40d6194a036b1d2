"""The rollup document: the contract between the rollup job (writer) and the API (reader).

One document per merchant x UTC hour x combination of the rollup dimensions, in the monthly
index ``rollups-<generation>-YYYY.MM`` (the UTC month of ``hour``; ``Names.rollups_index``)
behind the read alias ``Names.rollups_alias``. Mapping: ``storage.templates.ROLLUP_PROPERTIES``,
built from the field names below (this module is their source of truth).

- ``_id`` is deterministic (``doc_id``: hash of merchant, hour and dimension values), so re-runs
  and concurrent runs overwrite instead of adding. Writes carry ``version_type=external_gte``
  with ``version = computed_at``: an older computation can never overwrite a newer one.
- ``currency`` is a dimension like the others (decision 0200): a detail document holds the
  money of one currency only, so money is never added across currencies on the rollup path.
  A merchant with one currency has no more detail documents than before (its money events
  all carry that currency, the others none, and ``event_type`` already separates them).
- Dimension values the events did not carry are stored as ``MISSING``, so filters and
  groupings treat "no value" explicitly and terms aggregations never drop documents.
- Counts and sums are exact integers (money in thousandths, like raw ``amount_milli``):
  ``events`` all events; ``payments_succeeded``/``payments_failed`` events with
  event_type=payment and that status; ``gross_milli`` the amounts of succeeded payments;
  ``refunds_milli`` the amounts of event_type=refund; ``disputes`` the events with
  event_type=dispute. Add them across documents.
- ``customers_hll`` is a DataSketches HLL sketch (lg_k = ``SKETCH_LG_K``, HLL_8, compact
  serialization, standard base64) of the ``customer_hash`` values of the document's events;
  events without a customer add nothing. Union sketches (``rollups.sketch``) to count unique
  customers over any set of documents; see there for the error bound.
- ``source_max_ingested_at`` is the newest raw ``ingested_at`` the document includes.
- Besides the detail documents, each (merchant, hour) with events has one TOTAL document
  (``level`` = ``LEVEL_TOTAL``, every dimension field ``ALL``): the sums of its details and the
  union of their sketches. A report with no filter and no grouping reads one document per hour
  instead of every combination (decision 0045). Its ``money`` (unindexed) keeps the money
  per currency: ``{currency: [payments_succeeded, gross_milli, refunds_milli]}`` over the
  details with succeeded payments or refunded amounts (``MISSING`` for money without a
  currency); its own ``gross_milli``/``refunds_milli`` add every currency and mean something
  only when ``money`` has one key. Readers must pick a level (``TOTALS_ONLY`` or
  ``DETAILS_ONLY``): summing both counts every event twice.
- Each (merchant, UTC day) with a TOTAL document has one DAY PACK document (``level`` =
  ``LEVEL_DAY``, id ``pack_id``): no ``hour`` and no dimension fields, only ``merchant_id``,
  ``day`` and ``hours``, an unindexed object of six 24-long arrays (``PACK_FIELDS``) holding
  the day's TOTAL documents' counts and sums, hour by hour (0 where an hour has none). A report
  with no filter, no grouping and no unique customers reads one pack per day instead of 24
  TOTAL documents (decision 0049). ``hours`` also holds ``currency``, 24 slot codes (``""``:
  no money, a currency code: every money figure of the slot is in it, ``MULTI``: see
  ``hours.money[str(slot)]``, the TOTAL document's ``money`` of that hour). A single-currency
  merchant's pack grows by the 24 codes and nothing else (decision 0200). Packs are derived
  from the TOTAL documents after they are written (``rollups.packs``); queries that select
  documents by ``hour`` never match them.
- Which hours may be served from these documents is decided by ``rollups.state``.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, date, datetime

from pulse.clock import DAY_MS as DAY_MS
from pulse.clock import HOUR_MS as HOUR_MS
from pulse.naming import Names

# Rollup dimensions, in the order of DESIGN.md's Dimension enum; names equal raw field names.
DIMENSIONS: tuple[str, ...] = (
    "event_type",
    "status",
    "payment_method",
    "store_id",
    "country",
    "channel",
    "device",
    "currency",  # added in schema 4 (decision 0200)
    "decline_code",  # schema 4; on failed payments only, in practice (decision 0205)
)
MISSING = "__none__"
# Dimension value of every dimension field in a merchant-hour TOTAL document (below).
ALL = "__all__"
# Which documents a reader sums: one level only, or every event is counted twice.
LEVEL_DETAIL = "detail"
LEVEL_TOTAL = "merchant"
LEVEL_DAY = "day"  # a day pack: the day's TOTAL documents' counts, one array slot per hour
# Bumped when documents of an older job lack something readers rely on (2: total documents,
# 3: day packs, 4: currency in the key and money per currency (decision 0200), disputes and
# decline_code (decision 0205)).
# A state written by an older job serves nothing and makes the next run recompute everything.
SCHEMA_VERSION = 4

# Fields of a rollup document.
MERCHANT = "merchant_id"
HOUR = "hour"  # date: start of the UTC hour, epoch millis
EVENTS = "events"  # long: count of raw events
PAYMENTS_SUCCEEDED = "payments_succeeded"  # long
PAYMENTS_FAILED = "payments_failed"  # long
GROSS_MILLI = "gross_milli"  # long: sum of amount_milli of succeeded payments
REFUNDS_MILLI = "refunds_milli"  # long: sum of amount_milli of refunds
DISPUTES = "disputes"  # long: count of dispute events (schema 4)
CUSTOMERS_SKETCH = "customers_hll"  # binary: serialized HLL sketch of customer_hash values
COMPUTED_AT = "computed_at"  # date: when the job last changed this document (its version)
SOURCE_MAX_INGESTED_AT = "source_max_ingested_at"  # date: newest raw ingested_at it includes
GENERATION = "generation"  # keyword: raw generation it was computed from
LEVEL = "level"  # keyword: LEVEL_DETAIL, or LEVEL_TOTAL (absent in documents of schema 1)
# keyword, TOTAL documents only: their merchant_id. One term then finds a merchant's totals
# without visiting its detail documents (an engine intersects postings; no range scan).
TOTAL_OF = "total_of"
DAY = "day"  # date, day packs only: start of the UTC day
PACK = "hours"  # object (not indexed), day packs only: PACK_FIELDS -> 24 values, hour by hour
PACK_FIELDS = (EVENTS, PAYMENTS_SUCCEEDED, PAYMENTS_FAILED, GROSS_MILLI, REFUNDS_MILLI, DISPUTES)
CURRENCY = "currency"  # keyword dimension; in a pack's ``hours``: the 24 slot codes
MONEY = "money"  # TOTAL documents: currency -> MoneyEntry; packs' ``hours``: slot -> that
MULTI = "*"  # slot code of an hour whose money is in more than one currency
NO_MONEY = ""  # slot code of an hour without succeeded payments or refunded amounts
MoneyEntry = list[int]  # [payments_succeeded, gross_milli, refunds_milli] of one currency

SKETCH_LG_K = 12  # 4096 registers: relative standard error 1.04/sqrt(4096) ~ 1.6%

DimensionValues = tuple[str, ...]  # one value per DIMENSIONS entry, MISSING when absent
TOTAL: DimensionValues = ()  # the values key of a merchant-hour total (no dimension applies)
DAY_PACK: DimensionValues = (LEVEL_DAY,)  # the values key of a merchant-day pack

# Which raw events each figure counts, as query clauses: the rollup job sums them into the
# documents above and the API counts the same events when it reads raw (one definition).
RAW_PAID = {
    "bool": {"filter": [{"term": {"event_type": "payment"}}, {"term": {"status": "succeeded"}}]}
}
RAW_FAILED = {
    "bool": {"filter": [{"term": {"event_type": "payment"}}, {"term": {"status": "failed"}}]}
}
RAW_REFUND = {"term": {"event_type": "refund"}}
RAW_DISPUTE = {"term": {"event_type": "dispute"}}

# Query clauses choosing one level of documents (a detail clause also matches schema-1 docs).
TOTALS_ONLY = {"term": {LEVEL: LEVEL_TOTAL}}
DETAILS_ONLY = {"bool": {"must_not": [{"terms": {LEVEL: [LEVEL_TOTAL, LEVEL_DAY]}}]}}


def slot_code(money: dict[str, MoneyEntry]) -> str:
    """A pack slot's currency code for a TOTAL document's ``money`` (NO_MONEY, one, MULTI)."""
    if not money:
        return NO_MONEY
    return next(iter(money)) if len(money) == 1 else MULTI


def totals_of(merchant_id: str) -> dict[str, dict[str, str]]:
    """The clause selecting one merchant's TOTAL documents."""
    return {"term": {TOTAL_OF: merchant_id}}


def hour_start(ts_ms: int) -> int:
    """Start of the UTC hour containing ``ts_ms`` (epoch millis)."""
    return ts_ms - ts_ms % HOUR_MS


def month_of(hour_ms: int) -> date:
    """The first day of the UTC month of an instant: which monthly index holds the hour."""
    return datetime.fromtimestamp(hour_ms / 1000, tz=UTC).date().replace(day=1)


def index_for(names: Names, generation: str, hour_ms: int) -> str:
    """The monthly rollup index that holds the documents of ``hour_ms``."""
    return names.rollups_index(generation, month_of(hour_ms))


def doc_id(merchant_id: str, hour_ms: int, values: DimensionValues) -> str:
    """Deterministic ``_id`` of the document of (merchant, hour, dimension values)."""
    key = "\x1f".join((merchant_id, str(hour_ms), *values))
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def day_start(ts_ms: int) -> int:
    """Start of the UTC day containing ``ts_ms`` (epoch millis)."""
    return ts_ms - ts_ms % DAY_MS


def pack_id(merchant_id: str, day_ms: int) -> str:
    """Deterministic ``_id`` of the day pack of (merchant, UTC day starting at ``day_ms``)."""
    return doc_id(merchant_id, day_ms, DAY_PACK)
