"""The `pulse reprocess`, `pulse reindex` and `pulse bench reprocess` commands."""

from __future__ import annotations

import typer


def register(root: typer.Typer, bench: typer.Typer) -> None:
    """Add this package's commands to the root CLI and to `pulse bench`."""
