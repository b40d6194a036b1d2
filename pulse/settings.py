"""One Settings object, loaded once from the environment (prefix ``PULSE_``) and passed down."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every tunable of Pulse. Frozen: components receive it, never mutate it."""

    model_config = SettingsConfigDict(env_prefix="PULSE_", frozen=True, extra="ignore")

    # Engines. Unset means "start the embedded stand-ins" (pulse up) or "find .pulse/stack.json".
    opensearch_url: str | None = None
    kafka_bootstrap: str | None = None
    state_dir: str = ".pulse"

    # Isolation prefix for every topic, index, alias and consumer group ("" in production).
    # Tests give each case its own namespace so they can share one pair of engines.
    namespace: str = ""

    # Kafka
    raw_partitions: int = Field(default=8, ge=1)
    dlq_partitions: int = Field(default=1, ge=1)
    # Replication for topics Pulse creates itself (embedded: 1). On Kubernetes Strimzi's
    # KafkaTopic resources create them first, and ensure_topics leaves existing topics alone.
    topic_replication: int = Field(default=1, ge=1)
    indexer_group: str = "pulse-indexer"
    kafka_session_timeout_ms: int = 6000
    kafka_heartbeat_interval_ms: int = 1000

    # Raw indices
    generation: str = "g1"
    raw_shards: int = Field(default=1, ge=1)
    raw_replicas: int = Field(default=0, ge=0)
    refresh_interval: str = "1s"
    raw_retention_days: int = Field(default=90, ge=1)
    max_future_skew_s: int = Field(default=3600, ge=0)
    # Sizing rule (docs/lifecycle.md): >0 derives the shard count from the expected volume,
    # 0 keeps raw_shards. Codec: stored fields dominate raw indices, so compress them.
    raw_expected_daily_events: int = Field(default=0, ge=0)
    raw_avg_doc_bytes: int = Field(default=600, ge=1)
    raw_target_shard_gb: float = Field(default=30.0, gt=0)
    raw_max_shards: int = Field(default=64, ge=1)
    raw_codec: str = "best_compression"

    # Index lifecycle (ilm): curator-like manager thresholds, mirrored in the ISM policies.
    ilm_precreate_days: int = Field(default=1, ge=0)
    ilm_rollover_max_docs: int = Field(default=200_000_000, ge=1)
    ilm_rollover_max_primary_shard_gb: float = Field(default=40.0, gt=0)
    ilm_warm_after_days: int = Field(default=7, ge=1)
    ilm_warm_replicas: int = Field(default=0, ge=0)
    ilm_interval_s: float = Field(default=300.0, gt=0)
    ilm_lock_ttl_s: float = Field(default=900.0, gt=0)

    # Indexer
    bulk_max_docs: int = Field(default=5000, ge=1)
    bulk_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    bulk_max_age_ms: int = Field(default=500, ge=1)
    engine_timeout_s: float = Field(default=30.0, gt=0)
    indexer_metrics_port: int = 0
    shutdown_timeout_s: float = Field(default=30.0, gt=0)
    # A re-sent event_id is looked up in the indices of this many neighbouring UTC days
    # (either side) before it is written; 0 disables the lookup (docs/decisions/0011).
    indexer_conflict_days: int = Field(default=1, ge=0, le=7)
    # Raw writers keep, per day, a bound of the newest ingested_at ahead by this much, so a
    # busy day costs one bookkeeping write per lookahead (storage.arrivals, docs/decisions/0048).
    arrivals_lookahead_ms: int = Field(default=60_000, ge=0)

    # Reprocessing (docs/reprocessing.md). The live indexer re-reads the generation registry at
    # least every registry_ttl_s; a switch waits for that before closing the replay.
    generation_registry_ttl_s: float = Field(default=5.0, gt=0)
    reprocess_lateness_s: int = Field(default=3600, ge=0)  # replay starts this long before --from
    reprocess_keep_days: int = Field(default=7, ge=0)  # old generation kept for rollback
    reprocess_batch_docs: int = Field(default=5000, ge=1)
    # The rollups of a range are held (served from raw) at least this long before its raw
    # indices are swapped: longer than any API report takes, so none reads rollups judged
    # before the hold and raw read after the swap (docs/decisions/0046).
    reprocess_hold_grace_s: float = Field(default=60.0, ge=0)
    # The sequential read stops at range end + this; later arrivals of the range are fetched
    # by their Kafka position (docs/decisions/0131). Negative: read to the head instead.
    reprocess_late_window_s: int = 3600
    # Before the final catch-up, how long to wait for the live indexer's committed offsets to
    # pass the head taken after the fence (it commits only what is durable).
    reprocess_indexer_wait_s: float = Field(default=300.0, gt=0)
    # Replay worker processes per run (partitions divided among them) and how long a worker's
    # claim on its partitions lasts without a checkpoint before another may take them over.
    reprocess_workers: int = Field(default=1, ge=1)
    reprocess_worker_lease_s: float = Field(default=30.0, gt=0)

    # Rollups
    rollup_interval_s: int = Field(default=60, ge=1)
    rollup_retention_days: int = Field(default=730, ge=1)
    # How far the rollup watermark lags the job's start: a raw doc is searchable at most
    # engine_timeout_s + refresh_interval after its ingested_at stamp (docs/decisions/0030).
    # None derives it from those two settings; tests may shorten it.
    rollup_visibility_margin_s: float | None = Field(default=None, ge=0)
    rollup_lease_ttl_s: float = Field(default=180.0, gt=0)
    # Shards of the rollup job by merchant hash, each with its own lease (docs/decisions/0220):
    # the most `pulse rollups` workers that can share a run. Changing it is a rolling restart
    # (a new layout starts from the served watermark; docs/operations.md).
    rollup_shards: int = Field(default=64, ge=1, le=4096)
    # Scheduled runs round W_to down to this step (None: rollup_interval_s; 0: no rounding), so
    # the workers ask for the same window and share one pair scan (docs/decisions/0222).
    rollup_watermark_step_s: float | None = Field(default=None, ge=0)
    rollup_page_size: int = Field(default=10_000, ge=1)  # composite buckets per request
    rollup_pairs_per_query: int = Field(default=500, ge=1)  # (merchant, hour) pairs per query
    rollups_metrics_port: int = 0  # /metrics of `pulse rollups`; 0: not served
    # First purchases per merchant-customer (storage.first_purchases, docs/decisions/0210).
    first_purchase_shards: int = Field(default=1, ge=1)

    # API
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    max_buckets: int = Field(default=5000, ge=1)
    rate_limit_per_minute: int = Field(default=600, ge=1)
    # One token bucket per key shared by all API replicas, in the engine (decision 0101);
    # false: each process keeps its own (a single replica, or tools with a stubbed engine).
    rate_limit_shared: bool = True
    api_request_timeout_s: float = Field(default=10.0, gt=0)  # per engine request
    max_groups: int = Field(default=10_000, ge=1)  # distinct groups a groupBy may scan
    max_limit: int = Field(default=100, ge=1)  # groupBy `limit` ceiling
    max_points: int = Field(default=100_000, ge=1)  # returned series points (groups x buckets)
    max_range_days: int = Field(default=3 * 366, ge=1)
    uniques_precision_threshold: int = Field(default=3000, ge=1, le=40_000)
    stitch_customer_cap: int = Field(default=20_000, ge=1)  # raw hashes fetched per stitched cell
    # NEW/RETURNING_CUSTOMERS and cohorts (api.customers, docs/decisions/0211): the distinct
    # (group, bucket, customer) keys one request may read, and the cohort matrix's limits.
    customer_max_keys: int = Field(default=500_000, ge=1)
    cohort_max_periods: int = Field(default=60, ge=1)
    cohort_max_cohorts: int = Field(default=400, ge=1)
    # Funnels (api.funnel, docs/decisions/0215): each exceeded limit is a BAD_USER_INPUT error.
    funnel_max_range_days: int = Field(default=93, ge=1)
    funnel_max_steps: int = Field(default=10, ge=1, le=30)
    funnel_max_within_s: int = Field(default=31 * 86_400, ge=0)
    funnel_max_events: int = Field(default=1_000_000, ge=1)  # events read (exact first-page total)
    funnel_max_keys: int = Field(default=500_000, ge=1)  # keys entering the funnel
    funnel_page_size: int = Field(default=10_000, ge=1, le=10_000)  # engine's max_result_window
    funnel_timeout_s: float = Field(default=20.0, gt=0)  # whole read, checked between pages
    # Per-request cost budget, checked before any engine work (api.budget, docs/api.md "Limits").
    max_request_points: int = Field(default=50_000, ge=1)  # buckets x metrics x groups, summed
    max_request_fields: int = Field(default=500, ge=1)  # selected fields, fragments expanded
    max_request_aliases: int = Field(default=10, ge=0)
    max_request_depth: int = Field(default=20, ge=1)  # graphql-core's introspection: 15
    rate_limit_points_per_token: int = Field(default=100, ge=1)  # a report: >= 1 token
    # HTTP limits of the API server (api.app, api.cli).
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    api_max_header_bytes: int = Field(default=16 * 1024, ge=1024)
    api_max_response_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    api_keepalive_timeout_s: float = Field(default=5.0, gt=0)
    api_header_timeout_s: float = Field(default=10.0, gt=0)  # a request's headers must arrive
    api_max_concurrency: int = Field(default=256, ge=1)  # open connections+requests, then 503
    # Key lookups (api.authcache): a revoked key stops within api_key_cache_ttl_s.
    api_key_cache_ttl_s: float = Field(default=5.0, ge=0)
    api_unknown_key_ttl_s: float = Field(default=60.0, ge=0)
    api_key_cache_entries: int = Field(default=10_000, ge=0)
    # Failed key lookups per client address: a burst, then this many a minute.
    api_auth_failures_burst: int = Field(default=5, ge=1)
    api_auth_failures_per_minute: int = Field(default=5, ge=1)
    readyz_cache_s: float = Field(default=5.0, ge=0)  # /readyz reuses an engine check this long

    # Collector (the authenticated HTTP edge; Fluent Bit in_http formats). docs/operations.md
    collector_host: str = "127.0.0.1"
    collector_port: int = 8888
    collector_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)  # in_http's 4M
    collector_max_records: int = Field(default=10_000, ge=1)  # per request
    # A record whose Kafka message (event + @timestamp, and its key) is larger is refused
    # `too_large`: below Kafka's default message.max.bytes (1 MiB incl. batch overhead).
    collector_max_record_bytes: int = Field(default=1_000_000, ge=1024)
    collector_ack_timeout_s: float = Field(default=10.0, gt=0)  # Kafka acks, then 503
    collector_retry_after_s: int = Field(default=5, ge=1)  # the 503's Retry-After
    # Verified write keys (and unknown ones) are remembered this long per collector process:
    # the bound on how long a revoked key keeps writing (decision 0120).
    collector_key_ttl_s: float = Field(default=30.0, gt=0)

    log_level: str = "INFO"
    log_json: bool = True


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment exactly once."""
    return Settings()
