"""``pulse fx load`` / ``pulse fx status`` against the engine: idempotent loads, coverage."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from opensearchpy import OpenSearch
from typer.testing import CliRunner

from ingest.loadgen import CURRENCIES
from ingest.loadgen_rates import HISTORY_DAYS, demo_rates
from pulse.naming import names_for
from pulse.settings import Settings
from pulsectl.cli import app
from storage import fx


def _env(settings: Settings) -> dict[str, str]:
    return {
        "PULSE_OPENSEARCH_URL": str(settings.opensearch_url),
        "PULSE_KAFKA_BOOTSTRAP": str(settings.kafka_bootstrap),
        "PULSE_NAMESPACE": settings.namespace,
        "PULSE_STATE_DIR": settings.state_dir,
    }


def test_load_is_idempotent_and_status_shows_gaps(
    settings: Settings, os_client: OpenSearch, tmp_path: Path
) -> None:
    env, runner = _env(settings), CliRunner()
    empty = runner.invoke(app, ["fx", "status"], env=env)
    assert empty.exit_code == 0 and "no exchange rates" in empty.stdout
    rates = tmp_path / "rates.csv"
    rates.write_text(
        "date,currency,per_usd\n2024-03-01,EUR,0.92\n2024-03-05,EUR,0.91\n"
        "2024-03-20,EUR,0.93\n2024-03-01,JPY,150\n"
    )
    first = runner.invoke(app, ["fx", "load", str(rates)], env=env)
    assert first.exit_code == 0, first.output
    assert "4 rates: 4 new, 0 changed, 0 unchanged" in first.stdout
    again = runner.invoke(app, ["fx", "load", str(rates)], env=env)
    assert "4 rates: 0 new, 0 changed, 4 unchanged" in again.stdout
    index = names_for(settings).fx_index
    os_client.indices.refresh(index=index)
    rates_only = {"query": fx.RATES_ONLY}  # less the version document (decision 0260)
    assert os_client.count(index=index, body=rates_only)["count"] == 4  # ids: date+currency
    rates.write_text("date,currency,per_usd\n2024-03-01,EUR,0.95\n")
    fixed = runner.invoke(app, ["fx", "load", str(rates)], env=env)
    assert "1 rates: 0 new, 1 changed, 0 unchanged" in fixed.stdout
    status = runner.invoke(app, ["fx", "status"], env=env)
    assert status.exit_code == 0, status.output
    eur = next(line for line in status.stdout.splitlines() if line.startswith("EUR"))
    assert eur.split("\t") == ["EUR", "2024-03-01", "2024-03-20", "3", "2024-03-27",
                               "2024-03-13..2024-03-19"]  # fmt: skip
    assert "JPY\t2024-03-01\t2024-03-01\t1\t2024-03-08\tnone" in status.stdout


def test_a_bad_file_loads_nothing(
    settings: Settings, os_client: OpenSearch, tmp_path: Path
) -> None:
    rates = tmp_path / "rates.csv"
    rates.write_text("date,currency,per_usd\n2024-03-01,EUR,0.92\n2024-03-02,EUR,-1\n")
    result = CliRunner().invoke(app, ["fx", "load", str(rates)], env=_env(settings))
    assert result.exit_code == 2 and "line 3" in result.output
    assert not os_client.indices.exists(index=names_for(settings).fx_index)


def test_demo_rates_let_every_demo_currency_convert_over_the_history() -> None:
    today = date(2026, 11, 30)
    rates = demo_rates(today)
    table = fx.table(r.doc() for r in sorted(rates, key=lambda r: (r.currency, r.day)))
    for currency in CURRENCIES:
        # The demo's history and its late events, today and tomorrow (live traffic).
        for back in range(-1, HISTORY_DAYS + 4):
            assert table.per_usd(currency, today - timedelta(days=back)) > 0
    assert fx.parse_csv("date,currency,per_usd\n" + "".join(
        f"{r.day},{r.currency},{r.per_usd}\n" for r in rates)) == sorted(
        rates, key=lambda r: (r.currency, r.day))  # fmt: skip
