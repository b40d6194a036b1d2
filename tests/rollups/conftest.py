"""Rollup tests: a short visibility margin (raw docs are refreshed before every run)."""

from __future__ import annotations

import pytest

from ingest.loadgen import days_ago_ms
from pulse.settings import Settings


@pytest.fixture
def rsettings(settings: Settings) -> Settings:
    """The test's settings with the margin the tests may shorten (docs/decisions/0030)."""
    return settings.model_copy(
        # No W_to rounding: the tests roll up what they wrote a moment ago.
        update={
            "rollup_visibility_margin_s": 0.0,
            "rollup_lease_ttl_s": 600.0,
            "rollup_watermark_step_s": 0.0,
        }
    )


@pytest.fixture
def base_ms() -> int:
    """Midnight UTC ten days ago: the test data's hours are long closed."""
    return days_ago_ms(10)
