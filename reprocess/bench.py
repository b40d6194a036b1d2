"""`pulse bench reprocess`: replay throughput against the live indexer's, in the same run."""

from __future__ import annotations

import typer


def register_bench(bench: typer.Typer) -> None:
    """Add `pulse bench reprocess`."""
