"""``pulse ilm status``: one row per managed index, with its lifecycle phase."""

from __future__ import annotations

from datetime import datetime, timedelta

from rich.table import Table

from ilm import filters as f
from ilm.inventory import RAW, IndexInfo
from pulse.settings import Settings


def phase(info: IndexInfo, settings: Settings, now: datetime) -> str:
    """hot-write / hot / warm / offline (not served by the read alias) / expired."""
    retention = settings.raw_retention_days if info.kind == RAW else settings.rollup_retention_days
    if f.past_retention(now, retention)(info):
        return "expired"
    if not info.in_read_alias:
        return "offline"
    if info.write_blocked:
        return "warm"
    if info.kind == RAW and info.is_write:
        return "hot-write"
    return "hot"


def human_bytes(n: float) -> str:
    for unit in ("b", "kb", "mb", "gb", "tb"):
        if n < 1024 or unit == "tb":
            return f"{n:.0f}{unit}" if unit == "b" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}tb"


def human_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{rest // 60}m" if hours else f"{rest // 60}m{rest % 60}s"


def status_rows(inventory: list[IndexInfo], settings: Settings, now: datetime) -> list[list[str]]:
    rows = []
    for info in inventory:
        period = info.start.strftime("%Y-%m-%d" if info.kind == RAW else "%Y-%m")
        rows.append(
            [
                info.name,
                info.generation,
                period,
                str(info.docs),
                human_bytes(info.primary_bytes),
                phase(info, settings, now),
                human_age(now - info.created),
            ]
        )
    return rows


def status_table(inventory: list[IndexInfo], settings: Settings, now: datetime) -> Table:
    table = Table(title="Pulse indices")
    for column in ("index", "generation", "day", "docs", "size", "phase", "age"):
        table.add_column(column, justify="right" if column in ("docs", "size") else "left")
    for row in status_rows(inventory, settings, now):
        table.add_row(*row)
    return table
