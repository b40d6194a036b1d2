"""`pulse ilm plan|apply|status|run` end to end on the embedded engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from ilm import cli as ilm_cli
from pulse.settings import Settings, get_settings

# The package's own register(), on a root of its own (independent of the other packages).
app = typer.Typer()
ilm_cli.register(app)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    assert settings.opensearch_url and settings.kafka_bootstrap
    monkeypatch.setenv("PULSE_OPENSEARCH_URL", settings.opensearch_url)
    monkeypatch.setenv("PULSE_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("PULSE_NAMESPACE", settings.namespace)
    monkeypatch.setenv("PULSE_LOG_JSON", "false")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_plan_apply_status_run(cli_env: None, settings: Settings) -> None:
    runner = CliRunner()
    planned = runner.invoke(app, ["ilm", "plan"])
    assert planned.exit_code == 0, planned.output
    assert "lifecycle path: manager (no ISM plugin); 3 change(s)" in planned.output
    assert f"{settings.namespace}-events-g1-" in planned.output

    applied = runner.invoke(app, ["ilm", "apply"])
    assert applied.exit_code == 0, applied.output
    assert "applied 3 change(s)" in applied.output

    status = runner.invoke(app, ["ilm", "status"])
    assert status.exit_code == 0, status.output
    assert "hot-write" in status.output and "generation" in status.output

    again = runner.invoke(app, ["ilm", "run"])
    assert again.exit_code == 0, again.output
    assert "applied 0 change(s)" in again.output


def test_plan_changes_nothing(cli_env: None, settings: Settings) -> None:
    from pulse.clients import opensearch_client
    from pulse.naming import names_for

    assert settings.opensearch_url
    client = opensearch_client(settings.opensearch_url)
    names = names_for(settings)
    before = client.indices.get(index=f"{settings.namespace}-*", allow_no_indices=True)
    result = CliRunner().invoke(app, ["ilm", "plan"])
    assert result.exit_code == 0, result.output
    assert client.indices.get(index=f"{settings.namespace}-*", allow_no_indices=True) == before
    assert not client.indices.exists_index_template(name=f"{names.template_prefix}-events")
