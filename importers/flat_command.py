"""`activity-scorer import-flat` (placeholder)."""

import typer


def import_flat(source: str = typer.Argument(...)) -> None:
    """Convert a flat export into a dataset (not yet implemented)."""
    raise typer.Exit(2)
