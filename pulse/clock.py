"""Time helpers every package shares: epoch milliseconds, hours and days, ISO 8601 instants.

Pulse keeps instants as integer epoch milliseconds (UTC) everywhere: raw ``occurred_at`` and
``ingested_at``, rollup hours, watermarks, arrival bounds and run times. The event contract
(``ingest.contract``) validates RFC 3339 more strictly than ``parse_instant`` (an offset is
required; error codes per field); everything else that reads an instant from a person or an
engine answer uses ``parse_instant``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def now_ms() -> int:
    """Wall-clock epoch milliseconds (from integer nanoseconds: no float rounding)."""
    return time.time_ns() // 1_000_000


def parse_instant(value: str) -> int:
    """Epoch milliseconds from integer epoch millis or ISO 8601 (a date or a date-time; ``Z``
    or ``z`` for UTC; a naive time is taken as UTC). Raises ValueError for anything else."""
    if value.lstrip("-").isdigit():
        return int(value)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)
