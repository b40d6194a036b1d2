"""Every topic, index, alias and consumer-group name, derived from the settings in one place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from pulse.settings import Settings

DAY_FORMAT = "%Y.%m.%d"


@dataclass(frozen=True)
class Names:
    """Names of Pulse's resources inside one namespace ("" in production)."""

    namespace: str = ""

    def _p(self, name: str) -> str:
        return f"{self.namespace}-{name}" if self.namespace else name

    def _t(self, name: str) -> str:
        return f"{self.namespace}.{name}" if self.namespace else name

    # Kafka
    @property
    def topic_raw(self) -> str:
        return self._t("events.raw")

    @property
    def topic_dlq(self) -> str:
        return self._t("events.dlq")

    def group(self, name: str) -> str:
        return self._p(name)

    # Raw events: backing indices events-<gen>-YYYY.MM.DD[-NNNNNN], read alias "events".
    @property
    def events_alias(self) -> str:
        return self._p("events")

    def raw_prefix(self, generation: str) -> str:
        return self._p(f"events-{generation}-")

    def raw_index(self, generation: str, day: date) -> str:
        """The day's name as DESIGN.md writes it, events-<gen>-YYYY.MM.DD: the day's write
        alias (ilm, docs/decisions/0020); its backing indices are ``raw_backing_index``."""
        return f"{self.raw_prefix(generation)}{day.strftime(DAY_FORMAT)}"

    def raw_backing_index(self, generation: str, day: date, seq: int) -> str:
        """A backing index of the day's write alias: events-<gen>-YYYY.MM.DD-NNNNNN."""
        return f"{self.raw_index(generation, day)}-{seq:06d}"

    @property
    def raw_pattern(self) -> str:
        return self._p("events-*")

    # Rollups
    @property
    def rollups_alias(self) -> str:
        return self._p("rollups")

    @property
    def rollups_pattern(self) -> str:
        return self._p("rollups-*")

    def rollups_index(self, generation: str, month: date) -> str:
        """The monthly rollup index: rollups-<gen>-YYYY.MM (the UTC month of the hour)."""
        return self._p(f"rollups-{generation}-{month.strftime('%Y.%m')}")

    # Pulse's own bookkeeping (API keys, leases, watermarks, run states).
    @property
    def keys_index(self) -> str:
        return self._p("pulse-keys")

    @property
    def ratelimit_index(self) -> str:
        """One token bucket per API key, shared by the API replicas (api.ratelimit)."""
        return self._p("pulse-ratelimits")

    @property
    def state_index(self) -> str:
        return self._p("pulse-state")

    @property
    def ilm_state_index(self) -> str:
        """The index lifecycle manager's lock and bookkeeping documents."""
        return self._p("pulse-ilm")

    @property
    def reprocess_index(self) -> str:
        """Reprocessing run states and the generation registry (which generation serves a day)."""
        return self._p("pulse-reprocess")

    @property
    def fx_index(self) -> str:
        """Exchange rates per UTC date and currency (storage.fx, ``pulse fx load``)."""
        return self._p("pulse-fx-rates")

    @property
    def template_prefix(self) -> str:
        return self._p("pulse")


def names_for(settings: Settings) -> Names:
    return Names(namespace=settings.namespace)


def day_of(ts_ms: int) -> date:
    """The UTC calendar day of an epoch-millisecond instant (raw indices are UTC days)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date()
